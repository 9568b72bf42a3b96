"""The one ASGI app of SPEC §5: tracking, unsubscribe pages and the shop's API."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text

from models.db import Database
from web import api_customers, api_orders, telegram_webhook, texts, tracking

# A database that answers later than this is down for whoever probes the health.
HEALTH_DEADLINE_SECONDS = 2.0


@dataclass(frozen=True)
class WebConfig:
    api_token: str
    secret_key: str
    public_base_url: str
    default_timezone: str
    default_phone_region: str


def create_app(
    db: Database, config: WebConfig, *, telegram: telegram_webhook.Inbox | None = None
) -> FastAPI:
    """`telegram`: the bot of this process, when Telegram posts to a webhook."""
    app = FastAPI(title="Chainmail", version="1", docs_url=None, redoc_url=None)
    app.state.db = db
    app.state.config = config
    app.state.telegram = telegram
    app.include_router(telegram_webhook.router)
    app.include_router(api_customers.router)
    app.include_router(api_orders.router)
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
        return JSONResponse({"status": "ok"})

    return app
