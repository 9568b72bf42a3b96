"""Links in messages: UTM tags and the click-tracking rewrite of HTML anchors.

The rewrite works on the rendered HTML with a regular expression rather than a
parser: it runs once per message, and a parser costs more than the rest of the
message together. What that leaves out, on purpose: only `href` of `<a ...>` tags
is rewritten (not `<area>`, not CSS or scripts); a tag whose attribute values hold
`>` is read correctly only when those values are quoted; an anchor inside an HTML
comment is rewritten too (harmless: nobody can click it). URLs in plain text are
found by `models.text_links`.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from urllib.parse import quote, unquote_plus

UTM_SOURCE = "chainmail"


def utm_params(campaign: str, position: int, medium: str) -> tuple[tuple[str, str], ...]:
    """The tags of a step's links; `medium` is the channel, `email` or `sms`."""
    return (
        ("utm_source", UTM_SOURCE),
        ("utm_medium", medium),
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
