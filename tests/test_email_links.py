"""Pure pieces of email composition: UTM tags, link rewriting, header encoding."""

from __future__ import annotations

import email
import email.policy
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels import mime
from channels.links import add_query_params, rewrite_html_links, utm_params
from models.text_links import rewrite_text_links

UTM = utm_params("spring_sale", 3, "email")


def test_utm_params_name_the_campaign_and_step() -> None:
    assert dict(UTM) == {
        "utm_source": "chainmail",
        "utm_medium": "email",
        "utm_campaign": "spring_sale",
        "utm_content": "step3",
    }


@pytest.mark.parametrize(
    ("url", "tagged"),
    [
        ("https://a.example", "https://a.example?{utm}"),
        ("https://a.example/p", "https://a.example/p?{utm}"),
        ("https://a.example/p?x=1", "https://a.example/p?x=1&{utm}"),
        ("https://a.example/p?x=1&", "https://a.example/p?x=1&{utm}"),
        ("https://a.example/p?x=1#frag", "https://a.example/p?x=1&{utm}#frag"),
        ("https://a.example/#/route?y=2", "https://a.example/?{utm}#/route?y=2"),
        ("https://a.example/p?q=%D0%B0+b", "https://a.example/p?q=%D0%B0+b&{utm}"),
    ],
)
def test_utm_tags_are_appended_keeping_query_and_fragment(url: str, tagged: str) -> None:
    utm = "utm_source=chainmail&utm_medium=email&utm_campaign=spring_sale&utm_content=step3"
    assert add_query_params(url, UTM) == tagged.format(utm=utm)


def test_existing_utm_params_are_not_duplicated_or_changed() -> None:
    url = "https://a.example/?UTM_SOURCE=partner&utm_campaign=own"

    assert add_query_params(url, UTM) == f"{url}&utm_medium=email&utm_content=step3"
    assert add_query_params(add_query_params(url, UTM), UTM) == add_query_params(url, UTM)


_QUERY_PAIRS = st.lists(st.tuples(st.text(min_size=1, max_size=8), st.text(max_size=8)), max_size=5)


@settings(max_examples=200, deadline=None)
@given(pairs=_QUERY_PAIRS, campaign=st.text(max_size=20), fragment=st.text(max_size=10))
def test_tagging_keeps_every_pair_and_adds_each_missing_utm_once(
    pairs: list[tuple[str, str]], campaign: str, fragment: str
) -> None:
    query = urlencode(pairs)
    url = f"https://a.example/p?{query}" if query else "https://a.example/p"
    if fragment:
        url += "#" + quote(fragment)
    params = utm_params(campaign, 1, "email")

    tagged = urlsplit(add_query_params(url, params))

    result = parse_qsl(tagged.query, keep_blank_values=True)
    assert result[: len(pairs)] == pairs
    present = {name.lower() for name, _ in pairs}
    assert result[len(pairs) :] == [(n, v) for n, v in params if n not in present]
    assert tagged.fragment == urlsplit(url).fragment


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("See https://a.example/x.", ["https://a.example/x"]),
        ("(https://a.example/x)", ["https://a.example/x"]),
        ("https://en.wikipedia.org/wiki/Foo_(bar) ok", ["https://en.wikipedia.org/wiki/Foo_(bar)"]),
        ("<https://a.example/x>, \"http://b.example/?q=1\"", ["https://a.example/x", "http://b.example/?q=1"]),
        ("Go: HTTPS://A.example/path?x=1&y=2!", ["HTTPS://A.example/path?x=1&y=2"]),
        ("mailto:x@y.example and ftp://z.example", []),
    ],
)  # fmt: skip
def test_text_links_are_found_without_trailing_punctuation(text: str, found: list[str]) -> None:
    seen: list[str] = []

    def record(url: str) -> str:
        seen.append(url)
        return url

    assert rewrite_text_links(text, record) == text
    assert seen == found


def test_text_links_are_replaced_in_place() -> None:
    text = "One https://a.example/x. Two https://b.example/y!"

    assert rewrite_text_links(text, lambda url: url + "?t=1") == (
        "One https://a.example/x?t=1. Two https://b.example/y?t=1!"
    )


@pytest.mark.parametrize(
    ("markup", "targets"),
    [
        ('<a href="https://a.example/1">x</a>', ["https://a.example/1"]),
        ("<a href='https://a.example/2'>x</a>", ["https://a.example/2"]),
        ("<a href=https://a.example/3>x</a>", ["https://a.example/3"]),
        ("<A\nclass=b\nHREF = \"https://a.example/4\">x</A>", ["https://a.example/4"]),
        ('<a title="1 > 0" href="https://a.example/5">x</a>', ["https://a.example/5"]),
        ('<a title="href=https://evil.example" href="https://a.example/6">', ["https://a.example/6"]),
        ('<a data-href="https://no.example" href="https://a.example/7">', ["https://a.example/7"]),
        ('<a href="https://a.example/8?x=1&amp;y=2">', ["https://a.example/8?x=1&y=2"]),
        ('<a href="  https://a.example/9  ">', ["https://a.example/9"]),
        ('<abbr href="https://no.example">', []),
        ('<area href="https://no.example">', []),
        ("<a name=top>", []),
    ],
)  # fmt: skip
def test_html_anchor_targets_are_read_as_a_browser_would(markup: str, targets: list[str]) -> None:
    seen: list[str] = []

    def record(target: str) -> None:
        seen.append(target)

    assert rewrite_html_links(markup, record) == markup
    assert seen == targets


def test_html_anchor_is_rewritten_with_its_other_attributes_kept() -> None:
    markup = "<p><a class='btn' href='https://a.example/?a=1&amp;b=2' id=x>Buy</a></p>"

    rewritten = rewrite_html_links(markup, lambda target: target + "&c=<3>")

    assert rewritten == (
        "<p><a class='btn' href=\"https://a.example/?a=1&amp;b=2&amp;c=&lt;3&gt;\" id=x>Buy</a></p>"
    )


def _parse_header(raw: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(raw + b"\r\n", policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def test_short_ascii_subject_stays_readable() -> None:
    assert mime.unstructured_header("Subject", "Spring sale") == b"Subject: Spring sale\r\n"


def test_ascii_subject_that_looks_encoded_is_encoded() -> None:
    raw = mime.unstructured_header("Subject", "=?utf-8?q?not_really?=")

    assert raw.startswith(b"Subject: =?utf-8?b?")
    assert _parse_header(raw)["Subject"] == "=?utf-8?q?not_really?="


def test_long_ascii_subject_is_folded_at_spaces() -> None:
    subject = " ".join(["word"] * 40)
    raw = mime.unstructured_header("Subject", subject)

    assert all(len(line) <= 78 for line in raw.split(b"\r\n"))
    assert b"=?" not in raw
    assert _parse_header(raw)["Subject"] == subject


def test_encoded_words_never_split_a_character() -> None:
    words = mime.encoded_words("ё" * 100 + "😀" * 30, 60)

    assert all(len(word) <= 75 for word in words)
    assert len(words[0]) <= 60
    for word in words:
        email.header.decode_header(word)[0][0].decode("utf-8")


@pytest.mark.parametrize(
    ("address", "plain"),
    [
        ("user@example.com", "user@example.com"),
        ("  user@example.com ", "user@example.com"),
        ("user@пример.рф", "user@xn--e1afmkfd.xn--p1ai"),
        ("first.last+tag@sub.example.com", "first.last+tag@sub.example.com"),
    ],
)
def test_addresses_are_made_plain(address: str, plain: str) -> None:
    assert mime.plain_address(address) == plain


@pytest.mark.parametrize(
    "address",
    [
        "",
        "user",
        "@example.com",
        "user@",
        "a@b@c",
        "üser@example.com",
        "a\n@b.c",
        "<a@b.c>",
        "a,b@c",
    ],
)
def test_unusable_addresses_are_refused(address: str) -> None:
    with pytest.raises(ValueError, match=r"^it"):
        mime.plain_address(address)
