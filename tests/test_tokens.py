"""Tracking tokens: genuine ones read back; forged, altered or misused ones don't."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from models.tokens import TokenData, TokenKind, make_token, read_token

SECRET = "test-secret"


@given(
    kind=st.sampled_from(list(TokenKind)),
    delivery_id=st.integers(min_value=1, max_value=2**62),
    index=st.integers(min_value=0, max_value=500),
)
def test_token_round_trips(kind: TokenKind, delivery_id: int, index: int) -> None:
    token = make_token(SECRET, kind, delivery_id, index)
    assert read_token(SECRET, token, kind) == TokenData(kind, delivery_id, index)


@given(position=st.integers(min_value=0, max_value=30), char=st.sampled_from("AQw_-.x0"))
def test_any_altered_character_makes_the_token_unreadable(position: int, char: str) -> None:
    token = make_token(SECRET, TokenKind.UNSUBSCRIBE, 12345)
    position %= len(token)
    altered = token[:position] + char + token[position + 1 :]
    if altered != token:
        assert read_token(SECRET, altered, TokenKind.UNSUBSCRIBE) is None


def test_token_signed_with_another_key_is_refused() -> None:
    token = make_token("other-secret", TokenKind.OPEN, 7)
    assert read_token(SECRET, token, TokenKind.OPEN) is None


def test_token_of_another_kind_is_refused() -> None:
    token = make_token(SECRET, TokenKind.OPEN, 7)
    assert read_token(SECRET, token, TokenKind.UNSUBSCRIBE) is None


def test_garbage_is_refused() -> None:
    for garbage in ["", ".", "abc", "a.b", "é.é", "x" * 500]:
        assert read_token(SECRET, garbage, TokenKind.CLICK) is None
