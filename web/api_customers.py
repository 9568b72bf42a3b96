"""`POST /api/v1/customers` (SPEC §5): the shop pushes customers, upserted by external_id."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel

from models.customers import save_customers
from web import texts
from web.auth import require_api_token
from web.body import read_json

MAX_CUSTOMERS_PER_REQUEST = 10_000
# The body is read whole before it is parsed: bound it before it is read.
MAX_BODY_BYTES = 20 * 1024 * 1024

_TEXT_OR_NULL = {"type": ["string", "null"]}
_CUSTOMER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["external_id"],
    "additionalProperties": False,
    "properties": {
        "external_id": {"type": ["string", "integer"], "maxLength": 128},
        "email": _TEXT_OR_NULL,
        "phone": {"type": ["string", "integer", "null"], "description": "E.164 or domestic"},
        "first_name": _TEXT_OR_NULL,
        "last_name": _TEXT_OR_NULL,
        "timezone": {"type": ["string", "null"], "description": "IANA zone: Asia/Omsk"},
        "language": {
            "type": ["string", "null"],
            "description": "ru or en: the footer and pages the customer reads; null: from"
            " the phone's country, else DEFAULT_LANGUAGE",
        },
        "tags": {"type": ["array", "null"], "items": {"type": "string"}},
        "attributes": {
            "type": ["object", "null"],
            "description": "merged into the stored attributes; a null value removes a key",
        },
    },
}

router = APIRouter(prefix="/api/v1", dependencies=[Depends(require_api_token)])


class CustomerError(BaseModel):
    index: int
    error: str


class CustomersAnswer(BaseModel):
    created: int
    updated: int
    errors: list[CustomerError]


@router.post(
    "/customers",
    summary="Add or update customers by external_id",
    description=(
        "Fields left out keep their stored values; fields given empty are cleared. "
        "Good items are stored even when others are refused; refused ones are listed "
        "by their index in the list."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "array",
                        "maxItems": MAX_CUSTOMERS_PER_REQUEST,
                        "items": _CUSTOMER_SCHEMA,
                    }
                }
            },
        }
    },
)
async def post_customers(request: Request) -> CustomersAnswer:
    # Read by hand, not as a typed body: one malformed item must be reported by its
    # index, not refuse the whole list with a 422.
    items = await read_json(request, MAX_BODY_BYTES)
    if not isinstance(items, list):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, texts.NOT_A_LIST_OF_CUSTOMERS)
    if len(items) > MAX_CUSTOMERS_PER_REQUEST:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            texts.TOO_MANY_CUSTOMERS.format(limit=MAX_CUSTOMERS_PER_REQUEST),
        )
    config = request.app.state.config
    report = await save_customers(
        request.app.state.db,
        items,
        default_timezone=config.default_timezone,
        default_phone_region=config.default_phone_region,
        actor="api",
    )
    return CustomersAnswer(
        created=report.created,
        updated=report.updated,
        errors=[
            CustomerError(index=error.index, error=str(error.reason)) for error in report.errors
        ],
    )
