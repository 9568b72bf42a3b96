"""`/api/v1/segments` (SPEC §2 "Made in the bot, the CLI or the API"): the shop's systems
list, read (with the live count), add, change and delete segments, in the same
definition documents as the bot's drafts and the CLI's options (models/segment_rules.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse

from i18n import Phrase
from models.errors import ChainmailError, NotFound
from models.segment_rules import (
    CONDITIONS_LIMIT,
    MAX_DAYS,
    MIN_DAYS,
    Behaviour,
    InvalidSegment,
    Operator,
    definition_json,
    parse_definition,
)
from models.segments import (
    NAME_LIMIT,
    SegmentInfo,
    SegmentInUse,
    SegmentTaken,
    count_members,
    create_segment,
    delete_segment,
    get_segment,
    is_segment_name,
    list_segments,
    update_segment,
)
from web import texts
from web.auth import require_api_token
from web.body import read_json

ACTOR = "api"
MAX_BODY_BYTES = 64 * 1024

_DEFINITION_PROPERTIES: dict[str, Any] = {
    "tags": {"type": "array", "items": {"type": "string"}, "description": "none: no tag condition"},
    "match": {"enum": ["any", "all"], "description": "of the tags; default any"},
    "attributes": {
        "type": "array",
        "maxItems": CONDITIONS_LIMIT,
        "items": {
            "type": "object",
            "required": ["key", "operator", "value"],
            "properties": {
                "key": {"type": "string"},
                "operator": {"enum": [op.value for op in Operator]},
                "value": {"type": ["string", "number"]},
            },
        },
    },
    "behaviour": {
        "type": "array",
        "maxItems": CONDITIONS_LIMIT,
        "items": {
            "type": "object",
            "required": ["behaviour"],
            "properties": {
                "behaviour": {"enum": [kind.value for kind in Behaviour]},
                "days": {"type": "integer", "minimum": MIN_DAYS, "maximum": MAX_DAYS},
            },
        },
    },
}
_DEFINITION = {"type": "object", "properties": _DEFINITION_PROPERTIES}
_NEW_SEGMENT = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string", "maxLength": NAME_LIMIT}, **_DEFINITION_PROPERTIES},
}

router = APIRouter(prefix="/api/v1", dependencies=[Depends(require_api_token)])


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _answer(segment: SegmentInfo, **more: Any) -> dict[str, Any]:
    return {"name": segment.name, **definition_json(segment), **more}


def _refused(problems: Sequence[object]) -> JSONResponse:
    return JSONResponse(
        {"errors": [str(problem) for problem in problems]},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


async def _document(request: Request) -> dict[str, Any]:
    body = await read_json(request, MAX_BODY_BYTES)
    if not isinstance(body, dict):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, texts.NOT_A_SEGMENT)
    return body


def _known_name(name: str) -> str:
    # A name no segment could have is not looked up (NUL bytes would fail the query).
    if not is_segment_name(name):
        raise HTTPException(status.HTTP_404_NOT_FOUND, texts.NO_SEGMENT.format(name=name))
    return name


@router.get("/segments", summary="Every segment and its definition")
async def get_segments(request: Request) -> list[dict[str, Any]]:
    return [_answer(segment) for segment in await list_segments(request.app.state.db)]


@router.get(
    "/segments/{name}",
    summary="A segment's definition and how many customers it finds now",
    responses={404: {"description": "no such segment"}},
)
async def get_one_segment(request: Request, name: str) -> dict[str, Any]:
    db = request.app.state.db
    try:
        segment = await get_segment(db, _known_name(name))
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    customers = await count_members(db, segment, now=datetime.now(UTC))
    return _answer(segment, customers=customers)


@router.post(
    "/segments",
    summary="Add a segment",
    status_code=status.HTTP_201_CREATED,
    description="Tags (any or all of them) and every attribute and behaviour condition must "
    "hold; no conditions at all: every customer. A refused definition lists every problem.",
    openapi_extra=_body(_NEW_SEGMENT),
    responses={409: {"description": "the name is taken"}, 422: {"description": "refused"}},
)
async def post_segment(request: Request) -> Any:
    document = await _document(request)
    name = document.pop("name", None)
    try:
        definition = parse_definition(document)
        if not isinstance(name, str):
            raise InvalidSegment([Phrase(texts.SEGMENT_NEEDS_NAME)])
        segment = await create_segment(request.app.state.db, name, definition, actor=ACTOR)
    except InvalidSegment as refused:
        return _refused(refused.problems)
    except SegmentTaken as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except ChainmailError as exc:
        return _refused([str(exc)])
    return JSONResponse(_answer(segment), status_code=status.HTTP_201_CREATED)


@router.put(
    "/segments/{name}",
    summary="Change what a segment finds",
    description="The whole definition, as for POST; chains that use the segment take in "
    "whom it finds when they next look (activation, a continuous chain's newcomers).",
    openapi_extra=_body(_DEFINITION),
    responses={404: {"description": "no such segment"}, 422: {"description": "refused"}},
)
async def put_segment(request: Request, name: str) -> Any:
    document = await _document(request)
    try:
        definition = parse_definition(document)
        segment = await update_segment(
            request.app.state.db, _known_name(name), definition, actor=ACTOR
        )
    except InvalidSegment as refused:
        return _refused(refused.problems)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    return _answer(segment)


@router.delete(
    "/segments/{name}",
    summary="Delete a segment no chain uses",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": "no such segment"}, 409: {"description": "in use"}},
)
async def remove_segment(request: Request, name: str) -> Response:
    try:
        await delete_segment(request.app.state.db, _known_name(name), actor=ACTOR)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except SegmentInUse as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)
