"""`POST /api/v1/orders`, `POST /api/v1/sms/status` and `POST /api/v1/sms/inbound` (SPEC §5),
for the shop's systems and its SMS gateway."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models import tracking
from models.customers import normalized_phone
from models.orders import OrderItem, record_orders
from web import texts
from web.auth import require_api_token
from web.body import read_json

MAX_ORDERS_PER_REQUEST = 1000
# 1000 orders take about 150 KB; a larger body is refused while it is read.
MAX_BODY_BYTES = 1024 * 1024
# A report is two short fields.
MAX_SMS_STATUS_BYTES = 4 * 1024
# An SMS of 10 UCS-2 parts is 670 characters: 4 KB when a gateway writes each
# character as a six-character JSON escape.
MAX_SMS_INBOUND_BYTES = 16 * 1024
# Delivery ids are BIGINT: a longer number cannot be one, and would overflow the query.
_DELIVERY_ID = re.compile(r"[0-9]{1,18}")

router = APIRouter(prefix="/api/v1", dependencies=[Depends(require_api_token)])

_ORDER_SCHEMA = OrderItem.model_json_schema()
_ORDERS_BODY_SCHEMA = {
    "anyOf": [
        _ORDER_SCHEMA,
        {"type": "array", "maxItems": MAX_ORDERS_PER_REQUEST, "items": _ORDER_SCHEMA},
    ]
}


class OrderError(BaseModel):
    index: int
    error: str


class OrdersAnswer(BaseModel):
    created: int = Field(description="Orders stored for the first time.")
    updated: int = Field(
        description="Orders stored already (or earlier in this request) whose amount or "
        "status changed: each such item is one update, kept in the order's history."
    )
    duplicates: int = Field(
        description="Orders stored already (or earlier in this request) with the same "
        "amount and status: nothing changed."
    )
    errors: list[OrderError]


class SmsStatusReport(BaseModel):
    model_config = ConfigDict(coerce_numbers_to_str=True)

    id: str = Field(description="The delivery id the gateway was given with the SMS.")
    status: Literal["delivered", "failed"]


class SmsStatusAnswer(BaseModel):
    status: Literal["ok"] = "ok"


class SmsInbound(BaseModel):
    sender: str = Field(alias="from", description="The phone the SMS came from: +E164 or domestic.")
    text: str = Field(description="What the customer wrote.")


class SmsInboundAnswer(BaseModel):
    unsubscribed: int = Field(
        description="Customers with that phone this SMS unsubscribed from SMS: 0 for a text "
        "that is not a stop word, a phone nobody has, or customers unsubscribed already."
    )


@router.post(
    "/orders",
    summary="Record orders and their updates, by external_id",
    description=(
        "One order or a list of them, taken in order. An order whose external_id is "
        "already stored (or earlier in the list) is an update when its amount or status "
        "differ (from `updated_at`, default when received), else a duplicate that "
        "changes nothing. Good orders are stored even when others are refused; refused "
        "ones are listed by their index (a single object is index 0). Moments without a "
        "UTC offset are read as UTC."
    ),
    responses={
        status.HTTP_413_CONTENT_TOO_LARGE: {"description": "Too many orders or too large a body"}
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ORDERS_BODY_SCHEMA}},
        }
    },
)
async def post_orders(request: Request) -> OrdersAnswer:
    # Read by hand, not as a typed body: one malformed order must be reported by
    # its index, not refuse the whole list with a 422.
    body: Any = await read_json(request, MAX_BODY_BYTES)
    if isinstance(body, dict):
        body = [body]
    if not isinstance(body, list):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, texts.NOT_AN_ORDER_OR_LIST)
    if len(body) > MAX_ORDERS_PER_REQUEST:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            texts.TOO_MANY_ORDERS.format(limit=MAX_ORDERS_PER_REQUEST),
        )
    result = await record_orders(request.app.state.db, body, datetime.now(UTC))
    return OrdersAnswer(
        created=result.created,
        updated=result.updated,
        duplicates=result.duplicates,
        errors=[OrderError(index=index, error=error) for index, error in result.errors],
    )


@router.post(
    "/sms/status",
    summary="Delivery report of an SMS from the gateway",
    description="`failed` means the SMS did not reach the phone: it counts as a bounce.",
    responses={
        status.HTTP_404_NOT_FOUND: {"description": "No SMS with that id"},
        status.HTTP_413_CONTENT_TOO_LARGE: {"description": "Too large a body"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": SmsStatusReport.model_json_schema()}},
        }
    },
)
async def post_sms_status(request: Request) -> SmsStatusAnswer:
    # Read by hand, not as a typed body: FastAPI reads a typed body before the
    # router's bearer check runs, and without a bound on its size.
    try:
        report = SmsStatusReport.model_validate(await read_json(request, MAX_SMS_STATUS_BYTES))
    except ValidationError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, exc.errors(include_url=False)
        ) from None
    recorded = _DELIVERY_ID.fullmatch(report.id) is not None and await tracking.record_sms_status(
        request.app.state.db, int(report.id), report.status, datetime.now(UTC)
    )
    if not recorded:
        raise HTTPException(status.HTTP_404_NOT_FOUND, texts.UNKNOWN_SMS.format(id=report.id))
    return SmsStatusAnswer()


def _reasons(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
        for error in exc.errors(include_url=False)
    )


@router.post(
    "/sms/inbound",
    summary="An SMS a customer sent to the shop's number, from the gateway",
    description=(
        "A text that is a stop word (`SMS_STOP_WORDS`, by default STOP, СТОП, ОТПИСКА, "
        "UNSUBSCRIBE; case, blank space and punctuation around it do not matter) "
        "unsubscribes every customer with that phone from SMS. Any other text changes nothing."
    ),
    responses={
        status.HTTP_400_BAD_REQUEST: {"description": "Not such an object, or a bad phone"},
        status.HTTP_413_CONTENT_TOO_LARGE: {"description": "Too large a body"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": SmsInbound.model_json_schema(by_alias=True)}
            },
        }
    },
)
async def post_sms_inbound(request: Request) -> SmsInboundAnswer:
    # Read by hand, as the status reports are: the bearer check comes first.
    config = request.app.state.config
    try:
        inbound = SmsInbound.model_validate(await read_json(request, MAX_SMS_INBOUND_BYTES))
        phone = normalized_phone(inbound.sender, config.default_phone_region)
    except ValidationError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, _reasons(exc)) from None
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"from: {exc}") from None
    unsubscribed = await tracking.sms_stop(
        request.app.state.db, phone, inbound.text, config.sms_stop_words, datetime.now(UTC)
    )
    return SmsInboundAnswer(unsubscribed=unsubscribed)
