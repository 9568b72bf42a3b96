"""The Bot API over HTTP: `TelegramDouble`, an ASGI app (Starlette) routing
`/bot<token>/<method>` and `/file/bot<token>/<file_path>` to the bots it serves,
and its life cycle on a free loopback port in a thread of its own.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from telegram_double.fake_bot import FakeBot
from telegram_double.requests import BotApiError, read_request

HOST = "127.0.0.1"


async def _hang_up(request: Request) -> None:
    """Returns when the client closes the connection (the body has been read by then)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _refusal(error_code: int, description: str) -> JSONResponse:
    body = {"ok": False, "error_code": error_code, "description": description}
    return JSONResponse(body, status_code=error_code)


class TelegramDouble(FakeBot):
    """The fake Bot API server; itself the FakeBot of its default token.

    `start()` serves it on a free port of 127.0.0.1 from a thread of its own
    (`url`, `api_base_url`, `file_base_url` then tell where); `app` is the same
    thing as an ASGI app for in-process use. More tokens: `add_bot`.
    Requests for a token it does not know are answered 401 Unauthorized.
    """

    def __init__(
        self,
        token: str = "123:ABC",
        *,
        username: str = "chainmail_test_bot",
        first_name: str = "Chainmail",
    ) -> None:
        super().__init__(token, username=username, first_name=first_name)
        self._bots: dict[str, FakeBot] = {token: self}
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        self.app = Starlette(
            routes=[
                Route("/bot{token}/{method}", self._serve_call, methods=["GET", "POST"]),
                Route("/file/bot{token}/{file_path:path}", self._serve_file, methods=["GET"]),
            ],
            exception_handlers={HTTPException: self._serve_http_error},
        )

    @property
    def api_base_url(self) -> str:
        """For PTB's `base_url` and TELEGRAM_API_BASE_URL: the token is appended to it."""
        return f"{self._started_url()}/bot"

    @property
    def file_base_url(self) -> str:
        """For PTB's `base_file_url`."""
        return f"{self._started_url()}/file/bot"

    def _started_url(self) -> str:
        if not self.url:
            raise RuntimeError("the Telegram double is not started")
        return self.url

    def add_bot(self, token: str, *, username: str, first_name: str = "Test bot") -> FakeBot:
        """Serve another bot token, with state of its own."""
        bot = FakeBot(token, username=username, first_name=first_name)
        with self._lock:
            if token in self._bots:
                raise ValueError(f"token {token!r} is served already")
            self._bots[token] = bot
        return bot

    def bot(self, token: str) -> FakeBot:
        with self._lock:
            return self._bots[token]

    async def _serve_call(self, request: Request) -> Response:
        bot = self._bots.get(request.path_params["token"])
        if bot is None:
            return _refusal(401, "Unauthorized")
        try:
            values, uploads = await read_request(request)
        except BotApiError as refusal:
            return _refusal(refusal.error_code, refusal.description)
        # A client that gives up on a long poll (PTB does on stop) hangs up, or, in
        # process, cancels this handler: either way the poll is dropped, so it is not
        # answered, nor logged as ended by its successor's conflict.
        call = asyncio.ensure_future(bot.call(request.path_params["method"], values, uploads))
        hang_up = asyncio.ensure_future(_hang_up(request))
        answered = False
        try:
            await asyncio.wait({call, hang_up}, return_when=asyncio.FIRST_COMPLETED)
            answered = call.done()
        finally:
            hang_up.cancel()
            if not answered:
                call.cancel()
        if not answered:
            return Response(status_code=499)
        status, body = call.result()
        return JSONResponse(body, status_code=status)

    async def _serve_file(self, request: Request) -> Response:
        bot = self._bots.get(request.path_params["token"])
        data = None if bot is None else bot.download(request.path_params["file_path"])
        if data is None:
            return _refusal(404, "Not Found")
        return Response(data, media_type="application/octet-stream")

    async def _serve_http_error(self, request: Request, error: Exception) -> Response:
        # Telegram answers any path it does not serve (or a wrong verb) with a JSON 404.
        return _refusal(404, "Not Found")

    # Life cycle.

    def start(self) -> TelegramDouble:
        if self._server is not None:
            raise RuntimeError("the Telegram double is running already")
        for bot in list(self._bots.values()):
            bot._close(False)
        config = uvicorn.Config(
            self.app,
            loop="asyncio",
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets whose proto
        # says TCP, and without it every answer waits ~40 ms for a delayed ACK.
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, 0))
        port = listener.getsockname()[1]
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [listener]}, name="telegram-double", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                self.stop()
                raise RuntimeError("the Telegram double did not start")
            time.sleep(0.01)
        self.url = f"http://{HOST}:{port}"
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        # Long polls still waiting would hold the shutdown up for their whole timeout.
        for bot in list(self._bots.values()):
            bot._close(True)
        server.should_exit = True
        thread.join(10)
        self._server = self._thread = None
        self.url = ""

    def __enter__(self) -> TelegramDouble:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> TelegramDouble:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.stop)
