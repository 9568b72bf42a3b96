"""The one ASGI app of SPEC §5: tracking, unsubscribe pages and the shop's API."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text

from models.db import Database
from web import api_customers, api_orders, telegram_webhook, texts, tracking


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
        try:
            async with db.session() as session:
                await session.execute(text("SELECT 1"))
        except Exception:
            return JSONResponse({"status": texts.DATABASE_UNAVAILABLE}, status_code=503)
        return JSONResponse({"status": "ok"})

    return app
