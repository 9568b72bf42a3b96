"""The HTML part of an email step that has no HTML of its own, made from its text.

Without an HTML part a message has no open pixel and no tracked links, so its opens
and clicks would never be counted. Made for every message from the rendered text
(customer data included), so everything in it is escaped here; the composer then
tracks its links and adds the footer and pixel as it does for a manager's HTML.
Runs of spaces collapse as anywhere in HTML; line breaks and paragraphs are kept.
"""

from __future__ import annotations

import re
from html import escape

from models.text_links import text_link_spans

# A blank line: a line break, then lines of nothing but spaces and tabs.
_BLANK_LINES = re.compile(r"\n(?:[^\S\n]*\n)+")
# Small on purpose: SpamAssassin's HTML_IMAGE_ONLY_* score an HTML part with an image
# (the open pixel) by its length, with the local score set the least between 400 and
# 800 characters (docs/email.md). Gmail drops the attributes of <body>, so the style is
# on a <div>.
_DOCUMENT_START = (
    '<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>\n'
    '<div style="font-family:Arial,Helvetica,sans-serif;font-size:16px;line-height:1.5;'
    'color:#222222;max-width:600px">\n'
)
_DOCUMENT_END = "</div>\n</body></html>\n"
_NEWLINE = "\n"
_LINE_BREAK = "<br>\n"


def text_to_html(text: str) -> str:
    """`text` as a document: blank-line-separated blocks as paragraphs, line breaks as
    `<br>`, http(s) URLs as links (found as the text part's UTM tagging finds them)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    pieces: list[str] = []
    done = 0
    for start, end in text_link_spans(text):
        url = text[start:end]
        pieces += [
            escape(text[done:start], quote=False),
            f'<a href="{escape(url)}">{escape(url, quote=False)}</a>',
        ]
        done = end
    pieces.append(escape(text[done:], quote=False))
    # A URL never holds whitespace, so the blocks split between links, never inside one.
    blocks = (block.strip() for block in _BLANK_LINES.split("".join(pieces)))
    body = "".join(f"<p>{block.replace(_NEWLINE, _LINE_BREAK)}</p>\n" for block in blocks if block)
    return f"{_DOCUMENT_START}{body}{_DOCUMENT_END}"
