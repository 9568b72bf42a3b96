"""Bearer-token authentication of the shop's systems (SPEC §5)."""

from __future__ import annotations

import secrets

from fastapi import HTTPException, Request, status

from web import texts


def require_api_token(request: Request) -> None:
    expected: str = request.app.state.config.api_token
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if (
        not expected
        or scheme.lower() != "bearer"
        or not secrets.compare_digest(token.strip().encode(), expected.encode())
    ):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=texts.API_TOKEN_NOT_SET if not expected else texts.BAD_API_TOKEN,
            headers={"WWW-Authenticate": "Bearer"},
        )
