"""Composed emails parse back with Python's own parser and say what they should."""

from __future__ import annotations

import email
import email.policy
import re
from email.header import decode_header, make_header
from email.message import EmailMessage
from html.parser import HTMLParser
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import escape

from channels import mime
from channels.email_compose import (
    ComposedEmail,
    EmailComposer,
    EmailStep,
    Recipient,
    RenderError,
)
from channels.mime import one_line
from models.tokens import TokenKind, read_token

BASE = "https://t.shop.example"
SECRET = "test-secret"
INSTALLATION = "0a1b2c3d4e5f"
HTML = """<!doctype html>
<html><body>
<p>Здравствуйте, <b>{{ first_name }}</b>!</p>
<p><a href="https://shop.example/sale?ref=mail&amp;x=1#top">Распродажа</a></p>
<p><a class="btn" title="a > b" href='https://shop.example/p/{{ product }}'>Товар</a></p>
<p><a href="mailto:help@shop.example">mail</a> <a href="tel:+79990000000">call</a>
<a href="#footer">down</a> <a href="/relative">rel</a> <a name="x">anchor</a></p>
<p><A HREF=https://shop.example/already?utm_source=partner>upper</A></p>
</body></html>
"""


def make_step(**changes: Any) -> EmailStep:
    values: dict[str, Any] = {
        "chain_id": 3,
        "chain_name": "Осенняя распродажа",
        "step_id": 7,
        "position": 2,
        "campaign": "welcome_series",
        "utm": True,
        "subject": "Привет, {{ first_name }}! Скидка только для вас",
        "text": "Здравствуйте, {{ first_name }}!\nСмотрите https://shop.example/sale?ref=mail.\n",
        "html": HTML,
        "mail_from": "Магазин «Ромашка» <news@shop.example>",
    }
    values.update(changes)
    return EmailStep(**values)


def composer(**changes: Any) -> EmailComposer:
    return EmailComposer(
        make_step(**changes), public_base_url=BASE, secret_key=SECRET, installation_id=INSTALLATION
    )


def recipient(**context: Any) -> Recipient:
    values = {"first_name": "Иван", "last_name": "Петров", "product": 42}
    values.update(context)
    return Recipient(delivery_id=123, customer_id=45, email="ivan@example.com", context=values)


def parse(composed: ComposedEmail) -> EmailMessage:
    return cast(EmailMessage, email.message_from_bytes(composed.data, policy=email.policy.default))


def parts(message: EmailMessage) -> tuple[str, str]:
    text_part, html_part = message.iter_parts()
    assert text_part.get_content_type() == "text/plain"
    assert html_part.get_content_type() == "text/html"
    return _content(text_part), _content(html_part)


def _content(part: Any) -> str:
    return cast(str, part.get_content()).replace("\r\n", "\n")


def token_of(url: str, prefix: str) -> str:
    assert url.startswith(prefix), url
    return url.removeprefix(prefix)


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href is not None:
            self.hrefs.append(href)


def hrefs(markup: str) -> list[str]:
    """The anchors' targets as a real HTML parser reads them."""
    parser = _Anchors()
    parser.feed(markup)
    return parser.hrefs


def tracked_links(markup: str) -> list[tuple[int, int]]:
    """The delivery and link index of each click-tracked anchor, in document order."""
    found: list[tuple[int, int]] = []
    for url in hrefs(markup):
        if url.startswith(f"{BASE}/t/c/"):
            data = read_token(SECRET, token_of(url, f"{BASE}/t/c/"), TokenKind.CLICK)
            assert data is not None
            found.append((data.delivery_id, data.link_index))
    return found


def test_headers_decode_to_the_cyrillic_subject_and_names() -> None:
    message = parse(composer().compose(recipient()))

    assert message["Subject"] == "Привет, Иван! Скидка только для вас"
    sender = message["From"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == ("Магазин «Ромашка»", "news@shop.example")
    to = message["To"].addresses[0]
    assert (to.display_name, to.addr_spec) == ("Иван Петров", "ivan@example.com")
    assert message["MIME-Version"] == "1.0"
    assert message["Date"].datetime is not None
    assert not message.defects


def test_message_id_is_deterministic_per_step_and_customer() -> None:
    first = composer().compose(recipient())
    again = composer().compose(recipient(first_name="Пётр"))

    assert first.message_id == again.message_id == "<cm.0a1b2c3d4e5f.7.45@shop.example>"
    assert parse(first)["Message-ID"] == "<cm.0a1b2c3d4e5f.7.45@shop.example>"
    start, end = composer().message_id_parts
    assert f"{start}45{end}" == first.message_id


def test_multipart_alternative_has_text_first_and_html_last() -> None:
    message = parse(composer().compose(recipient()))

    assert message.get_content_type() == "multipart/alternative"
    text, markup = parts(message)
    assert text.startswith("Здравствуйте, Иван!\n")
    assert "<b>Иван</b>" in markup


@pytest.mark.parametrize("html", [None, "  \n"])
def test_without_html_the_text_is_made_into_the_html_part(html: str | None) -> None:
    built = composer(html=html)
    message = parse(built.compose(recipient()))

    assert built.html_from_text
    assert message.get_content_type() == "multipart/alternative"
    text, markup = parts(message)
    assert text.startswith("Здравствуйте, Иван!\n")
    assert markup.startswith('<!DOCTYPE html><html><head><meta charset="utf-8">')
    assert "Здравствуйте, Иван!<br>" in markup
    assert message["List-Unsubscribe"]
    assert not message.defects


def test_text_links_in_the_made_html_are_tracked_to_their_utm_tagged_targets() -> None:
    text = (
        "Sale: https://shop.example/sale?ref=mail&x=1.\n\n"
        "New (https://shop.example/p/{{ product }}), "
        "help https://shop.example/help and mail help@shop.example"
    )
    composed = composer(html=None, text=text).compose(recipient())
    plain, markup = parts(parse(composed))
    utm = "utm_source=chainmail&utm_medium=email&utm_campaign=welcome_series&utm_content=step2"

    targets = [
        f"https://shop.example/sale?ref=mail&x=1&{utm}",
        f"https://shop.example/p/42?{utm}",
        f"https://shop.example/help?{utm}",
    ]
    assert composed.links == targets
    assert tracked_links(markup) == [(123, 0), (123, 1), (123, 2)]
    # The links read as the manager wrote them; the text part's carry UTM tags, as before.
    assert ">https://shop.example/sale?ref=mail&amp;x=1</a>.</p>" in markup
    assert ">https://shop.example/p/42</a>), help" in markup
    assert plain.startswith(f"Sale: {targets[0]}.\n\nNew ({targets[1]}), help {targets[2]} and")


def test_customer_markup_in_the_text_is_escaped_in_the_made_html() -> None:
    evil = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    composed = composer(html=None).compose(recipient(first_name=evil))
    text, markup = parts(parse(composed))

    assert text.startswith(f"Здравствуйте, {evil}!")
    assert "<script" not in markup
    assert "<img src=x" not in markup
    assert "Здравствуйте, &lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x" in markup


def test_list_unsubscribe_offers_one_click_url_and_mailto() -> None:
    message = parse(composer().compose(recipient()))

    match = re.fullmatch(
        rf"<{re.escape(BASE)}/u/(\S+)>, <mailto:news@shop\.example\?subject=unsubscribe%20(\S+)>",
        str(message["List-Unsubscribe"]),
    )
    assert match is not None
    assert match.group(1) == match.group(2)
    data = read_token(SECRET, match.group(1), TokenKind.UNSUBSCRIBE)
    assert data is not None
    assert data.delivery_id == 123
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


@pytest.mark.parametrize("html", [HTML, None], ids=["html", "html-made-from-text"])
def test_both_parts_show_a_visible_unsubscribe_link(html: str | None) -> None:
    message = parse(composer(html=html).compose(recipient()))
    unsubscribe = str(message["List-Unsubscribe"]).split(">")[0].lstrip("<")

    text, markup = parts(message)
    assert unsubscribe in text
    assert f'<a href="{unsubscribe}">' in markup


def test_html_links_are_tracked_in_order_with_utm_on_the_targets() -> None:
    composed = composer().compose(recipient())
    _, markup = parts(parse(composed))
    utm = "utm_source=chainmail&utm_medium=email&utm_campaign=welcome_series&utm_content=step2"

    assert composed.links == [
        f"https://shop.example/sale?ref=mail&x=1&{utm}#top",
        f"https://shop.example/p/42?{utm}",
        "https://shop.example/already?utm_source=partner"
        "&utm_medium=email&utm_campaign=welcome_series&utm_content=step2",
    ]
    assert tracked_links(markup) == [(123, 0), (123, 1), (123, 2)]


def test_non_web_links_and_the_unsubscribe_link_are_left_alone() -> None:
    _, markup = parts(parse(composer().compose(recipient())))

    untouched = [h for h in hrefs(markup) if not h.startswith(f"{BASE}/t/c/")]
    assert untouched[:4] == ["mailto:help@shop.example", "tel:+79990000000", "#footer", "/relative"]
    assert untouched[4].startswith(f"{BASE}/u/")
    assert '<a name="x">' in markup


@pytest.mark.parametrize("html", [HTML, None], ids=["html", "html-made-from-text"])
def test_open_pixel_ends_the_html_body(html: str | None) -> None:
    _, markup = parts(parse(composer(html=html).compose(recipient())))

    pixel = re.search(
        rf'<img src="{re.escape(BASE)}/t/o/([^"]+)" width="1" height="1" alt="">\s*</body>', markup
    )
    assert pixel is not None
    data = read_token(SECRET, pixel.group(1), TokenKind.OPEN)
    assert data is not None
    assert data.delivery_id == 123


def test_html_without_body_tag_gets_footer_and_pixel_appended() -> None:
    _, markup = parts(parse(composer(html="<p>Hi</p>").compose(recipient())))

    assert markup.startswith("<p>Hi</p>")
    assert markup.endswith('width="1" height="1" alt="">')


def test_text_links_get_utm_but_are_not_tracked() -> None:
    text, _ = parts(parse(composer().compose(recipient())))

    assert (
        "Смотрите https://shop.example/sale?ref=mail&utm_source=chainmail&utm_medium=email"
        "&utm_campaign=welcome_series&utm_content=step2.\n" in text
    )
    assert "/t/c/" not in text


def test_utm_off_keeps_targets_and_text_links_as_written() -> None:
    composed = composer(utm=False).compose(recipient())
    text, _ = parts(parse(composed))

    assert composed.links[0] == "https://shop.example/sale?ref=mail&x=1#top"
    assert "https://shop.example/sale?ref=mail.\n" in text
    assert "utm_" not in text


def test_customer_data_cannot_inject_headers() -> None:
    evil = "Eve\r\nBcc: victim@example.com\nX-Injected: yes"
    composed = composer(subject="Hi {{ first_name }}").compose(recipient(first_name=evil))
    message = parse(composed)

    assert message["Bcc"] is None
    assert message["X-Injected"] is None
    assert message["Subject"] == "Hi Eve Bcc: victim@example.com X-Injected: yes"
    header_block = composed.data.split(b"\r\n\r\n")[0]
    assert all(line[:1] in b" \t" or b":" in line for line in header_block.split(b"\r\n"))


def test_customer_markup_is_escaped_in_html() -> None:
    _, markup = parts(parse(composer().compose(recipient(first_name="<script>x</script>"))))

    assert "<script>" not in markup
    assert "&lt;script&gt;" in markup


def test_message_is_seven_bit_with_short_lines() -> None:
    long_subject = "Очень длинная тема письма, " * 10 + "{{ first_name }}"
    data = composer(subject=long_subject).compose(recipient()).data

    assert data.isascii()
    # A URL cannot be folded; only List-Unsubscribe's may pass the advised 78.
    long_lines = [line for line in data.split(b"\r\n") if len(line) > 78]
    assert all(line.startswith((b"List-Unsubscribe: <", b" <mailto:")) for line in long_lines)
    assert b"\n" not in data.replace(b"\r\n", b"")


def test_template_failing_for_a_customer_raises_render_error_naming_the_part() -> None:
    broken = composer(html=None, text="{{ 10 / amount }}")

    with pytest.raises(RenderError, match=r"^text: "):
        broken.compose(recipient(amount=0))
    assert broken.compose(recipient(amount=5)).data


def test_template_that_does_not_compile_raises_at_construction() -> None:
    with pytest.raises(RenderError, match=r"^subject: line 1: "):
        composer(subject="Hi {{ first_name ")


def test_sandbox_hides_internals_and_refuses_changing_the_data() -> None:
    peeking = composer(html=None, text="[{{ first_name.__class__.__mro__ }}]")
    assert parts_of_text(peeking.compose(recipient())).startswith("[]")

    tags = ["vip"]
    with pytest.raises(RenderError, match=r"^text: .*append"):
        composer(html=None, text="{{ tags.append('x') }}").compose(recipient(tags=tags))
    assert tags == ["vip"]


def parts_of_text(composed: ComposedEmail) -> str:
    return parts(parse(composed))[0]


def test_missing_variables_render_empty() -> None:
    message = parse(composer(subject="Hi {{ nickname }}!").compose(recipient()))

    assert message["Subject"] == "Hi !"


def test_address_with_idn_domain_is_sent_in_ascii_form() -> None:
    composed = composer().compose(
        Recipient(delivery_id=1, customer_id=2, email="ivan@пример.рф", context={})
    )

    assert parse(composed)["To"].addresses[0].domain == "xn--e1afmkfd.xn--p1ai"


@pytest.mark.parametrize(
    "address",
    ["иван@example.com", "no-at-sign", "a@b@c", "x@y\r\nBcc: z@w", "a b@example.com", ""],
)
def test_unusable_address_raises_render_error(address: str) -> None:
    with pytest.raises(RenderError, match="cannot be used"):
        composer().compose(Recipient(delivery_id=1, customer_id=2, email=address, context={}))


def display_name(raw_header: bytes) -> str:
    """The display name of a one-address header, decoded as RFC 2047 says.

    Python's address parser keeps the whitespace between two adjacent encoded
    words (it does so for the headers it generates itself), which RFC 2047
    §6.2 says is not part of the text; a name long enough to need two words is
    read with the standard library's RFC 2047 decoder instead.
    """
    message = email.message_from_bytes(raw_header + b"\r\n", policy=email.policy.default)
    address = message[raw_header.split(b":")[0].decode()].addresses[0]
    if b"?= =?" not in raw_header.replace(b"\r\n", b""):
        return cast(str, address.display_name)
    value = str(make_header(decode_header(raw_header.decode().split(":", 1)[1])))
    return value.removesuffix(f" <{address.addr_spec}>")


def header_lines(data: bytes, name: bytes) -> bytes:
    match = re.search(rb"^" + name + rb": .*?\r\n(?! )", data, re.MULTILINE | re.DOTALL)
    assert match is not None
    return match.group().removesuffix(b"\r\n")


@settings(max_examples=300, deadline=None)
@given(
    first_name=st.text(max_size=80), last_name=st.text(max_size=80), subject=st.text(max_size=300)
)
def test_any_unicode_names_and_subjects_round_trip(
    first_name: str, last_name: str, subject: str
) -> None:
    context = {"subject": subject, "first_name": first_name, "last_name": last_name}
    composed = composer(subject="{{ subject }}").compose(
        Recipient(1, 2, "ivan@example.com", context)
    )
    message = parse(composed)

    assert composed.data.isascii()
    assert str(message["Subject"]) == one_line(subject)
    assert message["To"].addresses[0].addr_spec == "ivan@example.com"
    expected_name = one_line(" ".join(n for n in (first_name, last_name) if n))
    assert display_name(header_lines(composed.data, b"To")) == expected_name
    text, _ = parts(message)
    assert text.startswith("Здравствуйте, ")


@settings(max_examples=300, deadline=None)
@given(name=st.text(max_size=120))
def test_any_sender_display_name_round_trips(name: str) -> None:
    header = mime.address_header("From", name, "news@shop.example").removesuffix(b"\r\n")

    assert header.isascii()
    assert all(len(line) <= 78 for line in header.split(b"\r\n")[1:-1])
    assert display_name(header) == one_line(name)


def test_sender_name_with_specials_is_read_from_a_quoted_setting() -> None:
    built = composer(mail_from='"Shop, Inc. (RU)" <news@shop.example>')
    sender = parse(built.compose(recipient()))["From"].addresses[0]

    assert (sender.display_name, sender.addr_spec) == ("Shop, Inc. (RU)", "news@shop.example")
    assert built.envelope_sender == "news@shop.example"


@settings(max_examples=200, deadline=None)
@given(body=st.text(max_size=400))
def test_any_text_body_survives_base64_and_the_parser(body: str) -> None:
    built = composer(text="{{ body }}", html="<p>{{ body }}</p>", utm=False)
    text, markup = parts(parse(built.compose(recipient(body=body))))

    assert text.split("\n\n-- \n")[0] == canonical_lines(body).rstrip()
    assert markup.startswith(f"<p>{canonical_lines(str(escape(body)))}</p>")


def canonical_lines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def test_query_values_in_links_come_back_decoded() -> None:
    composed = composer(html='<a href="https://x.example/?q=a%20b&amp;r=1">x</a>').compose(
        recipient()
    )

    query = dict(parse_qsl(urlsplit(composed.links[0]).query))
    assert query["q"] == "a b"
    assert query["r"] == "1"
    assert query["utm_content"] == "step2"


def test_unusable_sender_address_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="'Shop <shop>' cannot be used"):
        composer(mail_from="Shop <shop>")


def raw_header(composed: ComposedEmail, name: str) -> str:
    """A header's value as written, unfolded, encoded words left as they are."""
    value = email.message_from_bytes(composed.data)[name]
    return re.sub(r"\r?\n[ \t]", " ", str(value))


def test_list_id_names_the_chain_in_this_installations_namespace() -> None:
    raw = raw_header(composer().compose(recipient()), "List-Id")

    phrase, _, list_id = raw.rpartition(" <")
    assert phrase.startswith("=?utf-8?b?")
    assert str(make_header(decode_header(phrase))) == "Осенняя распродажа"
    assert list_id == "chain-3.0a1b2c3d4e5f.shop.example>"


def test_an_ascii_chain_name_stays_readable_in_list_id() -> None:
    raw = raw_header(composer(chain_name='Spring "sale"').compose(recipient()), "List-Id")

    assert raw == '"Spring \\"sale\\"" <chain-3.0a1b2c3d4e5f.shop.example>'


def test_feedback_id_names_step_chain_and_campaign() -> None:
    message = parse(composer(campaign="autumn:sale").compose(recipient()))

    assert message["Feedback-ID"] == "7:3:autumn_sale:chainmail"


def test_headers_fixed_per_step_are_encoded_once_per_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    encoded: list[str] = []
    address_header = mime.address_header

    def counting(name: str, display_name: str, address: str) -> bytes:
        encoded.append(name)
        return address_header(name, display_name, address)

    monkeypatch.setattr(mime, "address_header", counting)
    step_composer = composer()
    messages = [parse(step_composer.compose(recipient())) for _ in range(3)]

    assert encoded.count("List-Id") == 1
    assert encoded.count("To") == 3
    assert len({m["List-Id"] for m in messages}) == 1
