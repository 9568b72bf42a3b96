"""Links in email bodies: UTM tags, the click-tracking rewrite of HTML anchors, text URLs.

Both work on the rendered text with regular expressions rather than a parser:
they run once per message, and a parser costs more than the rest of the
message together. What that leaves out, on purpose:

- HTML: only `href` of `<a ...>` tags is rewritten (not `<area>`, not CSS or
  scripts); a tag whose attribute values hold `>` is read correctly only when
  those values are quoted; an anchor inside an HTML comment is rewritten too
  (harmless: nobody can click it).
- Text: a URL is `http(s)://` up to the first space, quote or angle bracket;
  trailing sentence punctuation is left out, and a closing parenthesis too
  unless the URL opened one (`https://en.wikipedia.org/wiki/Foo_(bar)`).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator, Sequence
from urllib.parse import quote, unquote_plus

UTM_SOURCE = "chainmail"
UTM_MEDIUM = "email"


def utm_params(campaign: str, position: int) -> tuple[tuple[str, str], ...]:
    return (
        ("utm_source", UTM_SOURCE),
        ("utm_medium", UTM_MEDIUM),
        ("utm_campaign", campaign),
        ("utm_content", f"step{position}"),
    )


def add_query_params(url: str, params: Sequence[tuple[str, str]]) -> str:
    """`url` with `params` appended to its query, except names it already has.

    The existing query and fragment are kept byte for byte: re-encoding them
    could change what the shop's site receives.
    """
    base, hash_mark, fragment = url.partition("#")
    path, _, query = base.partition("?")
    present = {unquote_plus(pair.partition("=")[0]).lower() for pair in query.split("&") if pair}
    extra = "&".join(
        f"{quote(name, safe='')}={quote(value, safe='')}"
        for name, value in params
        if name.lower() not in present
    )
    if not extra:
        return url
    joiner = "&" if query and not query.endswith("&") else ""
    return f"{path}?{query}{joiner}{extra}{hash_mark}{fragment}"


def is_web_link(target: str) -> bool:
    return target[:8].lower().startswith(("http://", "https://"))


_TEXT_URL = re.compile(r"""https?://[^\s<>"'`{}|\\^\[\]]+""", re.IGNORECASE)
_TRAILING_PUNCTUATION = ".,;:!?*"


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


# `<a`, then attributes (quoted values consumed whole, so an `href=` inside a
# value is never taken for the attribute), then the href value in any quoting.
_ANCHOR_HREF = re.compile(
    r"""(<a\s(?:[^>"']|"[^"]*"|'[^']*')*?(?<![\w-])href\s*=\s*)("[^"]*"|'[^']*'|[^\s"'>]+)""",
    re.IGNORECASE,
)


def rewrite_html_links(markup: str, rewrite: Callable[[str], str | None]) -> str:
    """Each `<a href>` target, entity-decoded, passed to `rewrite` in document order.

    `rewrite` answers the new target (a URL; it is escaped here) or None to
    leave the anchor as it was.
    """

    def replace(match: re.Match[str]) -> str:
        value = match.group(2)
        if value[0] in "\"'":
            value = value[1:-1]
        new_target = rewrite(html.unescape(value).strip())
        if new_target is None:
            return match.group()
        return f'{match.group(1)}"{html.escape(new_target)}"'

    return _ANCHOR_HREF.sub(replace, markup)
