"""`POST /telegram/webhook`: updates Telegram posts when TELEGRAM_WEBHOOK_URL is set (SPEC §5).

Only a process that runs the bot serves it; Telegram proves itself with the secret
token given at setWebhook. A refused post changes nothing; a bot that is not ready
answers 503, and Telegram retries.
"""

from __future__ import annotations

import hmac
from typing import Protocol

from fastapi import APIRouter, HTTPException, Request, Response

from web.body import read_json

PATH = "/telegram/webhook"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_BODY = 1024 * 1024

router = APIRouter(include_in_schema=False)


class Inbox(Protocol):
    secret: str

    async def deliver(self, data: dict[str, object]) -> bool: ...


@router.post(PATH)
async def telegram_update(request: Request) -> Response:
    inbox: Inbox | None = getattr(request.app.state, "telegram", None)
    if inbox is None or not inbox.secret:
        raise HTTPException(404)
    given = request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode(), inbox.secret.encode()):
        raise HTTPException(403)
    data = await read_json(request, MAX_BODY)
    if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
        raise HTTPException(400)
    if not await inbox.deliver(data):
        raise HTTPException(503)
    return Response(status_code=200)
