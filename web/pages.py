"""The few HTML pages people see: asking to unsubscribe, the confirmation, a bad link.

Self-contained (inline CSS, no scripts, no outside resources), readable on a
phone, every text escaped, in the reader's language.
"""

from __future__ import annotations

from html import escape

from i18n import _, current_language, use_language
from web import texts

_CSS = """
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:#1f2328;background:#f6f8fa}
main{box-sizing:border-box;max-width:32rem;margin:12vh auto;padding:1.5rem;
background:#fff;border-radius:12px;box-shadow:0 1px 3px rgba(0,0,0,.12)}
h1{margin:0 0 .75rem;font-size:1.4rem}
p{margin:0 0 1.25rem}
button{width:100%;padding:.8rem 1rem;border:0;border-radius:8px;background:#1f6feb;
color:#fff;font:inherit;font-weight:600;cursor:pointer}
button:focus-visible{outline:3px solid #0b3d91;outline-offset:2px}
""".replace("\n", "")


def _page(title: str, *paragraphs: str, form: str = "") -> str:
    title = _(title)
    body = "".join(f"<p>{escape(_(text))}</p>" for text in paragraphs)
    return (
        f'<!doctype html><html lang="{escape(current_language())}"><head>'
        '<meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>"
        f"<body><main><h1>{escape(title)}</h1>{body}{form}</main></body></html>"
    )


def unsubscribe_page(channel: str, language: str) -> str:
    # No action attribute: the form posts back to the page's own URL, token and
    # all, with the same body a mail client sends for RFC 8058 one-click.
    with use_language(language):
        form = (
            '<form method="post">'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            f'<button type="submit">{escape(_(texts.UNSUBSCRIBE_BUTTON))}</button></form>'
        )
        return _page(texts.UNSUBSCRIBE_TITLE, texts.UNSUBSCRIBE_QUESTION[channel], form=form)


def unsubscribed_page(channel: str | None, language: str) -> str:
    with use_language(language):
        return _page(texts.UNSUBSCRIBED_TITLE, texts.UNSUBSCRIBED_DONE[channel])


def link_not_found_page(language: str) -> str:
    with use_language(language):
        return _page(texts.LINK_NOT_FOUND_TITLE, texts.LINK_NOT_FOUND_BODY)
