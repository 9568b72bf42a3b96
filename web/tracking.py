"""Links in messages (SPEC §5): open pixel, click redirects (an email's `/t/c/`, an
SMS's short `/s/`), unsubscribe.

No login here: the HMAC-signed token is the authorisation, and a token that is
forged, altered, of another kind or for a delivery that no longer exists
changes nothing and answers 404.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.exc import DBAPIError

from i18n import LANGUAGES
from models import tracking
from models.errors import DatabaseBusy
from models.tokens import TokenData, TokenKind, read_short_token, read_token
from web import pages
from web.spool import Fact

router = APIRouter(include_in_schema=False)

# A 1×1 GIF whose only colour is transparent, 43 bytes.
PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")

# A cached pixel or redirect would hide the next open or click from us.
_NO_STORE = {"Cache-Control": "no-store"}
_PAGE_HEADERS = {
    **_NO_STORE,
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
}


def _token(request: Request, token: str, kind: TokenKind) -> TokenData | None:
    return read_token(request.app.state.config.secret_key, token, kind)


def _html(page: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(page, status_code=status_code, headers=_PAGE_HEADERS)


def _link_not_found(request: Request) -> HTMLResponse:
    return _html(pages.link_not_found_page(_browser_language(request)), status_code=404)


def _browser_language(request: Request) -> str:
    """For a page about no known customer: the browser's most wanted language that we
    have (Accept-Language), else DEFAULT_LANGUAGE."""
    wanted: list[tuple[float, int, str]] = []
    for order, part in enumerate(request.headers.get("accept-language", "")[:200].split(",")):
        tag, _, quality = part.strip().partition(";q=")
        language = tag.split("-")[0].strip().lower()
        try:
            weight = float(quality) if quality else 1.0
        except ValueError:
            continue
        if language in LANGUAGES and weight > 0:
            wanted.append((-weight, order, language))
    return min(wanted)[2] if wanted else request.app.state.config.default_language


# A fact whose write finds the database busy is kept in the spool (web/spool.py)
# and answered as if stored: the person gets the pixel, the link, the page.


@router.get("/t/o/{token}")
async def open_pixel(request: Request, token: str) -> Response:
    data = _token(request, token, TokenKind.OPEN)
    if data is None:
        return Response(status_code=404, headers=_NO_STORE)
    at = datetime.now(UTC)
    try:
        known = await tracking.record_open(request.app.state.db, data.delivery_id, at)
    except DatabaseBusy:
        await request.app.state.spool.keep(Fact("open", data.delivery_id, at))
        known = True
    if not known:
        return Response(status_code=404, headers=_NO_STORE)
    return Response(PIXEL_GIF, media_type="image/gif", headers=_NO_STORE)


@router.get("/t/c/{token}")
async def click(request: Request, token: str) -> Response:
    return await _follow(request, _token(request, token, TokenKind.CLICK))


@router.get("/s/{token}")
async def sms_link(request: Request, token: str) -> Response:
    return await _follow(request, read_short_token(request.app.state.config.secret_key, token))


async def _follow(request: Request, data: TokenData | None) -> Response:
    """The click recorded, answered with the link's stored target."""
    if data is None:
        return _link_not_found(request)
    db = request.app.state.db
    at = datetime.now(UTC)
    try:
        target = await tracking.record_click(db, data.delivery_id, data.link_index, at)
    except DatabaseBusy:
        # Reading the target needs no write lock.
        target = await tracking.link_target(db, data.delivery_id, data.link_index)
        if target is not None:
            await request.app.state.spool.keep(Fact("click", data.delivery_id, at, data.link_index))
    if target is None:
        return _link_not_found(request)
    return RedirectResponse(target, status_code=302, headers=_NO_STORE)


@router.get("/u/{token}")
async def unsubscribe_page(request: Request, token: str) -> HTMLResponse:
    # Only asks: mail scanners fetch every link with GET.
    data = _token(request, token, TokenKind.UNSUBSCRIBE)
    if data is None:
        return _link_not_found(request)
    config = request.app.state.config
    reader = await tracking.delivery_reader(
        request.app.state.db, data.delivery_id, config.default_language
    )
    if reader is None:
        return _link_not_found(request)
    return _html(pages.unsubscribe_page(reader.channel.value, reader.language))


@router.post("/u/{token}")
async def unsubscribe(request: Request, token: str) -> HTMLResponse:
    # The body is not read: RFC 8058 mail clients send `List-Unsubscribe=One-Click`,
    # the page's form sends the same, and any other body asks for the same thing.
    # The answer is a page, not a redirect: mail clients do not follow one (RFC 8058).
    data = _token(request, token, TokenKind.UNSUBSCRIBE)
    if data is None:
        return _link_not_found(request)
    db = request.app.state.db
    at = datetime.now(UTC)
    try:
        result = await tracking.unsubscribe(db, data.delivery_id, at)
    except DatabaseBusy:
        await request.app.state.spool.keep(Fact("unsubscribe", data.delivery_id, at))
    else:
        if result is None:
            return _link_not_found(request)
    # Said in general, in the browser's language, when even reading who it was fails.
    reader = await _reader_if_readable(request, data.delivery_id)
    if reader is None:
        return _html(pages.unsubscribed_page(None, _browser_language(request)))
    return _html(pages.unsubscribed_page(reader.channel.value, reader.language))


async def _reader_if_readable(request: Request, delivery_id: int) -> tracking.Reader | None:
    try:
        return await tracking.delivery_reader(
            request.app.state.db, delivery_id, request.app.state.config.default_language
        )
    except (DBAPIError, OSError):
        return None
