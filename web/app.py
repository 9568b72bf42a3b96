"""The one ASGI app of SPEC §5: tracking, unsubscribe pages and the shop's API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.types import ASGIApp, Receive, Scope, Send

from models.db import Database, bounded_writes
from models.errors import DatabaseBusy
from models.sms_stop import DEFAULT_SMS_STOP_WORDS, stop_words
from web import api_customers, api_orders, api_segments, telegram_webhook, texts, tracking
from web.spool import Spool, replaying

# A database that answers later than this is down for whoever probes the health.
HEALTH_DEADLINE_SECONDS = 2.0
# What a request refused for a busy database is told to wait before trying again.
RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True)
class WebConfig:
    api_token: str
    secret_key: str
    public_base_url: str
    default_timezone: str
    default_phone_region: str
    # Where tracking facts wait while the database is busy (web/spool.py).
    spool_dir: Path = Path("spool")
    # A request's writes wait this long for the database, then answer 503.
    write_wait_seconds: float = 5.0
    # Inbound SMS texts that unsubscribe their phone (models/sms_stop.py).
    sms_stop_words: frozenset[str] = stop_words(DEFAULT_SMS_STOP_WORDS)
    # DEFAULT_LANGUAGE: the pages of customers with no language of their own.
    default_language: str = "ru"


class _BoundedWrites:
    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with bounded_writes(self.seconds):
            await self.app(scope, receive, send)


def create_app(
    db: Database, config: WebConfig, *, telegram: telegram_webhook.Inbox | None = None
) -> FastAPI:
    """`telegram`: the bot of this process, when Telegram posts to a webhook."""
    spool = Spool(config.spool_dir)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with replaying(spool, db):
            yield

    app = FastAPI(title="Chainmail", version="1", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.db = db
    app.state.config = config
    app.state.telegram = telegram
    app.state.spool = spool
    app.add_middleware(_BoundedWrites, seconds=config.write_wait_seconds)

    @app.exception_handler(DatabaseBusy)
    async def database_busy(_request: Request, exc: DatabaseBusy) -> JSONResponse:
        return JSONResponse(
            {"detail": str(exc)},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    app.include_router(telegram_webhook.router)
    app.include_router(api_customers.router)
    app.include_router(api_orders.router)
    app.include_router(api_segments.router)
    app.include_router(tracking.router)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        async def probe() -> None:
            # A read of a real table: a file that is not a database, or is corrupt
            # where the schema lives, fails here rather than looking fine.
            async with db.session() as session:
                await session.execute(text("SELECT count(*) FROM alembic_version"))

        try:
            await asyncio.wait_for(probe(), HEALTH_DEADLINE_SECONDS)
        except Exception:
            return JSONResponse({"status": texts.DATABASE_UNAVAILABLE}, status_code=503)
        # Facts kept on disk are told while there are any (web/spool.py).
        kept = {"kept_tracking_facts": n} if (n := len(spool.pending())) else {}
        if db.writes_waiting:
            return JSONResponse(
                {"status": texts.DATABASE_BUSY, **kept},
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        return JSONResponse({"status": "ok", **kept})

    return app
