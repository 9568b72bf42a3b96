"""URLs in plain text (an email's text part, an SMS): where each one begins and ends.

A regular expression rather than a parser: it runs once per message. A URL is
`http(s)://` up to the first space, quote or angle bracket; trailing sentence
punctuation is left out, and a closing parenthesis too unless the URL opened one
(`https://en.wikipedia.org/wiki/Foo_(bar)`).

Here rather than in `channels/` because the SMS part counters (the chain file's
check, the bot's composer) count the text as sent, its links shortened.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

_TEXT_URL = re.compile(r"""https?://[^\s<>"'`{}|\\^\[\]]+""", re.IGNORECASE)
_TRAILING_PUNCTUATION = ".,;:!?*"
# Paths of Chainmail's own links (tracking, unsubscribe, SMS links): never tracked or
# tagged again.
_OWN_PATHS = ("/u/", "/t/", "/s/")


def _url_end(url: str) -> int:
    end = len(url)
    while end and _dangling(url, end):
        end -= 1
    return end


def _dangling(url: str, end: int) -> bool:
    last = url[end - 1]
    if last == ")":
        return url.count("(", 0, end) < url.count(")", 0, end)
    return last in _TRAILING_PUNCTUATION


def text_link_spans(text: str) -> Iterator[tuple[int, int]]:
    """Where the http(s) URLs of plain text start and end, as `rewrite_text_links` reads them."""
    for match in _TEXT_URL.finditer(text):
        start = match.start()
        yield start, start + _url_end(match.group())


def rewrite_text_links(text: str, rewrite: Callable[[str], str]) -> str:
    """Every http(s) URL in plain text replaced by `rewrite(url)`."""

    def replace(match: re.Match[str]) -> str:
        found = match.group()
        end = _url_end(found)
        return rewrite(found[:end]) + found[end:]

    return _TEXT_URL.sub(replace, text)


def own_link_prefixes(public_base_url: str) -> tuple[str, ...]:
    """What links into Chainmail itself start with, for `str.startswith`."""
    base = public_base_url.rstrip("/")
    return tuple(f"{base}{path}" for path in _OWN_PATHS)
