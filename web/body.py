"""Request bodies read within bounds: the one way every endpoint that takes a body reads it.

Callers check who is asking first (the API's bearer token, Telegram's secret), so
nobody unauthenticated makes the server hold a byte of a body. The size is
bounded while the body is read (a declared Content-Length over the bound is
refused before any of it is), and the JSON is parsed with bounds of its own:
nesting at most `MAX_JSON_DEPTH` deep and integers of at most `MAX_INTEGER_DIGITS`
digits. Each refusal is a 413 or a 400 with the reason. NaN and Infinity are read:
they are a problem of one item, which the endpoint reports by its index.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import HTTPException, Request, status

from web import texts

# Far deeper than anything the API's objects nest (a list of customers, one customer,
# its attributes, a few levels inside), and far from the parser's own recursion limit.
MAX_JSON_DEPTH = 64
# Ids and amounts are a few dozen digits at most; Python refuses to read integers of
# more than 4300 digits, and a 4000-digit one costs quadratic time to convert.
MAX_INTEGER_DIGITS = 100


class _RefusedJson(ValueError):
    """The body is JSON, but not JSON we read; the message is the reason."""


def _size(limit: int) -> str:
    if limit % (1024 * 1024) == 0:
        return f"{limit // (1024 * 1024)} MB"
    if limit % 1024 == 0:
        return f"{limit // 1024} KB"
    return f"{limit} bytes"


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The whole body, or a 413 as soon as it is known to be larger than `max_bytes`."""
    too_large = HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE, texts.BODY_TOO_LARGE.format(limit=_size(max_bytes))
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise too_large
    return bytes(body)


def _integer(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise _RefusedJson(texts.JSON_INTEGER_TOO_LONG.format(limit=MAX_INTEGER_DIGITS))
    return int(digits)


def _deeper_than(value: object, limit: int) -> bool:
    # Iterative: the parsed value can be nearly as deep as the parser's recursion limit.
    pending = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def parse_json(body: bytes) -> Any:
    """The JSON value of `body`, or a 400 that says what is wrong with it."""
    try:
        value = json.loads(body, parse_int=_integer)
    except _RefusedJson as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    except RecursionError:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, texts.JSON_TOO_DEEP.format(limit=MAX_JSON_DEPTH)
        ) from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, texts.NOT_JSON.format(reason=exc)
        ) from None
    if isinstance(value, dict | list) and _deeper_than(value, MAX_JSON_DEPTH):
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, texts.JSON_TOO_DEEP.format(limit=MAX_JSON_DEPTH)
        )
    return value


async def read_json(request: Request, max_bytes: int) -> Any:
    """The body's JSON value, read and parsed within the bounds above."""
    return parse_json(await read_body(request, max_bytes))
