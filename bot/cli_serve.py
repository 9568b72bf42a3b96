"""Long-running processes: `chainmail web`, `chainmail worker`, `chainmail run` (and `bot`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Awaitable

import uvicorn

from bot.engine_process import run_engine
from bot.inbound_process import inbound_configured, serve_inbound
from bot.runtime import open_database
from bot.settings import Settings
from bot.telegram_app import WebhookInbox, run_bot
from models.db import Database, secret_key
from web.app import WebConfig, create_app

log = logging.getLogger(__name__)


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    web = commands.add_parser("web", help="serve tracking links, unsubscribe pages and the API")
    web.set_defaults(handler=_web)
    worker = commands.add_parser("worker", help="the engine: plan, decide, send (any number)")
    worker.set_defaults(handler=_worker)
    run = commands.add_parser(
        "run", help="bot, web and engine in one process (the embedded set-up)"
    )
    run.set_defaults(handler=_run)


async def web_config(settings: Settings, db: Database) -> WebConfig:
    return WebConfig(
        api_token=settings.api_token,
        secret_key=await secret_key(db, settings.secret_key),
        public_base_url=settings.public_base_url,
        default_timezone=settings.default_timezone,
        default_phone_region=settings.default_phone_region,
        spool_dir=settings.spool_dir,
        sms_stop_words=settings.sms_stop_words,
        default_language=settings.default_language,
    )


async def serve_web(
    settings: Settings, db: Database, stop: asyncio.Event, inbox: WebhookInbox | None = None
) -> None:
    app = create_app(db, await web_config(settings, db), telegram=inbox)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=settings.web_host, port=settings.web_port, log_level="warning", lifespan="off"
        )
    )
    # Signals are ours (see `until_stopped`), not uvicorn's.
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    log.info("web listening on http://%s:%s", settings.web_host, settings.web_port)
    serving = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await serving


async def until_stopped(settings: Settings, *parts: str) -> int:
    db = await open_database(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks: list[Awaitable[None]] = []
    inbox = None
    if "bot" in parts and settings.telegram_webhook_url:
        # Telegram posts to the web app, so the bot's process serves it.
        inbox = WebhookInbox()
        parts = tuple(dict.fromkeys((*parts, "web")))
    if "web" in parts:
        tasks.append(serve_web(settings, db, stop, inbox))
    if "engine" in parts:
        tasks.append(run_engine(settings, db, stop))
    if "bot" in parts:
        tasks.append(run_bot(settings, db, stop, inbox))
    if "inbound" in parts:
        tasks.append(serve_inbound(settings, db, stop))
    try:
        await asyncio.gather(*tasks)
    finally:
        await db.dispose()
    return 0


async def _web(settings: Settings, _args: argparse.Namespace) -> int:
    return await until_stopped(settings, "web")


async def _worker(settings: Settings, _args: argparse.Namespace) -> int:
    return await until_stopped(settings, "engine")


async def _run(settings: Settings, _args: argparse.Namespace) -> int:
    if not settings.api_token:
        log.warning("API_TOKEN is not set: the HTTP API refuses every request")
    parts = ["web", "engine"]
    if settings.telegram_bot_token:
        parts.append("bot")
    else:
        log.info("TELEGRAM_BOT_TOKEN is not set: the bot is off")
    if inbound_configured(settings):
        parts.append("inbound")
    return await until_stopped(settings, *parts)
