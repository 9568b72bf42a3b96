"""`chainmail playground` put together: one process, one port of 127.0.0.1.

| path | what |
|---|---|
| `/` | the chat page (static/index.html), `/static/*` its files |
| `/outbox` | the outbox page; `/outbox/email/{name}` one email's HTML, sandboxed |
| `/api/chat/*` | the chat page's JSON API (playground/chat.py) |
| `/api/outbox` | what the outbox holds |
| `/shop/*` | the demo shop's page, where the demo email's link leads; it places orders |
| `/telegram/*` | the Telegram double: the bot's TELEGRAM_API_BASE_URL is `…/telegram/bot` |
| everything else | the web app of `chainmail run`: `/t/…`, `/u/…`, `/api/v1/…`, `/healthz` |

PUBLIC_BASE_URL is the playground's own address, so the links in the outbox's
emails lead to this same server.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import re
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from bot.cli_serve import web_config
from bot.engine_process import run_engine
from bot.runtime import open_database
from bot.settings import Settings
from bot.telegram_app import run_bot
from models.db import Database
from models.errors import ChainmailError
from playground import texts
from playground.chat import chat_router, meet_the_people
from playground.demo_data import OWNER, seed_demo_data
from playground.demo_shop import DemoShop, shop_page
from playground.history import ChatHistory
from playground.outbox import Outbox
from telegram_double import TelegramDouble
from web.app import create_app

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
BOT_TOKEN = "4242:playground"
BOT_USERNAME = "chainmail_playground_bot"
# The shop's API token in the playground (loopback only): curl it like a shop would.
API_TOKEN = "playground"
# The engine ticks this often unless ENGINE_TICK_SECONDS says otherwise.
ENGINE_TICK_SECONDS = 1.0
STATIC = Path(__file__).parent / "static"
SHOWN_OUTBOX_ITEMS = 500
# A web address in escaped text: it stops where a space or an escaped quote or bracket starts.
_TEXT_URL = re.compile(r"https?://[^\s&]+(?:&amp;[^\s&]+)*")
# The emails' own markup runs with no script and no access to the page; links open
# in a new tab, where tracking and unsubscribe pages work as in a mail client.
_EMAIL_HEADERS = {
    "Content-Security-Policy": (
        "sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; "
        "img-src * data:; style-src 'unsafe-inline'"
    ),
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class PlaygroundOptions:
    port: int
    data_dir: Path
    demo_shop: bool = True

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def playground_settings(settings: Settings, options: PlaygroundOptions) -> Settings:
    """The process's settings with the playground's parts in place of the outside world's.

    Quiet hours are off: a demo at 22:00 should still show its SMS step.
    """
    data_dir = options.data_dir.resolve()
    tick = settings.engine_tick_seconds
    if "engine_tick_seconds" not in settings.model_fields_set:
        tick = ENGINE_TICK_SECONDS
    return settings.model_copy(
        update={
            "telegram_bot_token": BOT_TOKEN,
            "telegram_api_base_url": f"{options.url}/telegram/bot",
            # The double is polled; it calls no webhooks.
            "telegram_webhook_url": "",
            "admin_ids": [OWNER.id],
            "database_url": f"sqlite+aiosqlite:///{data_dir / 'chainmail.db'}",
            "outbox_dir": data_dir / "outbox",
            "spool_dir": data_dir / "spool",
            "public_base_url": options.url,
            "web_host": HOST,
            "web_port": options.port,
            "smtp_host": "",
            "sms_gateway_url": "",
            "quiet_hours_sms": None,
            "api_token": API_TOKEN,
            "engine_tick_seconds": tick,
        }
    )


def _listening_socket(port: int) -> socket.socket:
    # Bound before anything starts, so the bot's first request waits in the backlog
    # instead of being refused, and a port in use is said at once.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    # A restart must not wait for the last run's connections to leave TIME_WAIT.
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((HOST, port))
    except OSError:
        listener.close()
        raise ChainmailError(texts.PORT_IN_USE.format(port=port)) from None
    listener.listen(128)
    return listener


def build_app(
    web_app: FastAPI,
    double: TelegramDouble,
    outbox: Outbox,
    stop: asyncio.Event,
    *,
    db: Database,
    api_token: str,
) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(chat_router(double, stop))

    @app.get("/", include_in_schema=False)
    async def chat_page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/outbox", include_in_schema=False)
    async def outbox_page() -> FileResponse:
        return FileResponse(STATIC / "outbox.html")

    @app.get("/api/outbox")
    async def outbox_items() -> dict[str, Any]:
        emails = await asyncio.to_thread(outbox.emails)
        return {
            "emails": [email.summary() for email in emails[:SHOWN_OUTBOX_ITEMS]],
            "sms": (await asyncio.to_thread(outbox.sms))[:SHOWN_OUTBOX_ITEMS],
            "email_count": len(emails),
        }

    @app.get("/outbox/email/{name}")
    async def email_body(name: str) -> Response:
        email = await asyncio.to_thread(outbox.email, name)
        if email is None:
            return Response(status_code=404)
        body = email.html or f"<pre>{_linked(email.text)}</pre>"
        page = f'<!doctype html><meta charset="utf-8"><base target="_blank">{body}'
        return HTMLResponse(page, headers=_EMAIL_HEADERS)

    @app.get("/shop", include_in_schema=False)
    async def shop_front() -> RedirectResponse:
        return RedirectResponse("/shop/")

    @app.get("/shop/{path:path}", include_in_schema=False)
    async def shop(path: str) -> HTMLResponse:
        return HTMLResponse(await shop_page(db, f"/shop/{path}", api_token=api_token))

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/telegram", double.app)
    app.mount("/", web_app)
    return app


def _linked(text: str) -> str:
    """Plain text as HTML whose web addresses are links, as mail clients show them."""
    return _TEXT_URL.sub(lambda url: f'<a href="{url[0]}">{url[0]}</a>', html.escape(text))


async def _until_stopped(part: Awaitable[None], stop: asyncio.Event) -> None:
    """Any part that ends, by stop or by failure, stops the others."""
    try:
        await part
    finally:
        stop.set()


async def run_playground(
    settings: Settings, options: PlaygroundOptions, ready: Callable[[str], None]
) -> int:
    """Serve until SIGINT or SIGTERM; `ready` is told the page's address once it answers."""
    listener = _listening_socket(options.port)
    options.data_dir.mkdir(parents=True, exist_ok=True)
    settings = playground_settings(settings, options)
    db = await open_database(settings)
    try:
        return await _serve(settings, options, db, listener, ready)
    finally:
        listener.close()
        await db.dispose()


async def _serve(
    settings: Settings,
    options: PlaygroundOptions,
    db: Database,
    listener: socket.socket,
    ready: Callable[[str], None],
) -> int:
    await seed_demo_data(
        db,
        public_base_url=settings.public_base_url,
        default_timezone=settings.default_timezone,
        default_phone_region=settings.default_phone_region,
    )
    double = TelegramDouble(BOT_TOKEN, username=BOT_USERNAME, first_name="Chainmail")
    history = ChatHistory(double, options.data_dir / "telegram.json")
    history.load()
    meet_the_people(double)
    outbox = Outbox(settings.outbox_dir)
    web_app = create_app(db, await web_config(settings, db))
    stop = asyncio.Event()
    app = build_app(web_app, double, outbox, stop, db=db, api_token=settings.api_token)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = uvicorn.Server(
        uvicorn.Config(
            app, log_level="warning", lifespan="off", access_log=False, timeout_graceful_shutdown=1
        )
    )
    # Signals are ours (above), not uvicorn's.
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        if serving.done():
            await serving
            raise ChainmailError(texts.PORT_IN_USE.format(port=options.port))
        await asyncio.sleep(0.01)
    ready(options.url)

    parts = [run_engine(settings, db, stop), run_bot(settings, db, stop), history.keep_saved(stop)]
    if options.demo_shop:
        shop = DemoShop(
            db,
            outbox,
            base_url=options.url,
            api_token=API_TOKEN,
            state_path=options.data_dir / "demo-shop.json",
        )
        parts.append(shop.run(stop))
    results = await asyncio.gather(
        *(_until_stopped(part, stop) for part in parts), return_exceptions=True
    )
    history.save()
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await serving
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return 0
