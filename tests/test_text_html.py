"""The HTML part made from a step's text: what a mail program shows, read back with the
standard library's HTML parser."""

from __future__ import annotations

from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st

from channels.text_html import text_to_html
from models.text_links import rewrite_text_links

DOCUMENT_TAGS = {"html", "head", "meta", "body", "div"}


class _Reader(HTMLParser):
    """Paragraphs as lists of lines, the anchors, and every tag and attribute seen."""

    def __init__(self) -> None:
        super().__init__()
        self.paragraphs: list[list[str]] = []
        self.anchors: list[tuple[str | None, str]] = []
        self.tags: list[tuple[str, list[str]]] = []
        self._in_paragraph = False
        self._in_anchor = False
        self._after_break = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, [name for name, _ in attrs]))
        if tag == "p":
            self.paragraphs.append([""])
            self._in_paragraph = True
        elif tag == "br":
            self.paragraphs[-1].append("")
            self._after_break = True
        elif tag == "a":
            self.anchors.append((dict(attrs).get("href"), ""))
            self._in_anchor = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "p":
            self._in_paragraph = False
        elif tag == "a":
            self._in_anchor = False

    def handle_data(self, data: str) -> None:
        if not self._in_paragraph:
            assert not data.strip(), data  # nothing shows outside the paragraphs
            return
        if self._after_break:
            # The source's line break after a <br> is not part of the next line.
            data = data.removeprefix("\n")
            self._after_break = False
        self.paragraphs[-1][-1] += data
        if self._in_anchor:
            href, shown = self.anchors[-1]
            self.anchors[-1] = (href, shown + data)


def read(markup: str) -> _Reader:
    reader = _Reader()
    reader.feed(markup)
    reader.close()
    return reader


def text_urls(text: str) -> list[str]:
    """The URLs the text part's UTM tagging finds in `text`."""
    found: list[str] = []

    def collect(url: str) -> str:
        found.append(url)
        return url

    rewrite_text_links(text, collect)
    return found


def test_blank_lines_separate_paragraphs_and_line_breaks_become_br() -> None:
    markup = text_to_html("Hello, Anna!\nWelcome.\n\n\n  \t\nBye,\r\nthe shop\n")

    assert read(markup).paragraphs == [["Hello, Anna!", "Welcome."], ["Bye,", "the shop"]]


def test_the_document_is_whole_with_a_charset_and_readable_style() -> None:
    markup = text_to_html("Hi")

    assert markup.startswith('<!DOCTYPE html><html><head><meta charset="utf-8">')
    assert markup.rstrip().endswith("</div>\n</body></html>")
    assert [tag for tag, _ in read(markup).tags] == ["html", "head", "meta", "body", "div", "p"]
    # On a <div>: Gmail drops the attributes of <body>.
    assert '<div style="font-family:Arial' in markup


def test_empty_text_makes_an_empty_body() -> None:
    assert read(text_to_html("")).paragraphs == []
    assert read(text_to_html(" \n\n \n")).paragraphs == []


def test_urls_become_links_without_the_punctuation_after_them() -> None:
    text = (
        "See https://shop.example/sale. Or https://shop.example/a?x=1&y=2, "
        "(https://shop.example/new) and https://en.wikipedia.org/wiki/Foo_(bar)!"
    )
    reader = read(text_to_html(text))

    urls = [
        "https://shop.example/sale",
        "https://shop.example/a?x=1&y=2",
        "https://shop.example/new",
        "https://en.wikipedia.org/wiki/Foo_(bar)",
    ]
    assert reader.anchors == [(url, url) for url in urls]
    assert reader.paragraphs == [[text]]
    assert 'href="https://shop.example/a?x=1&amp;y=2"' in text_to_html(text)


def test_only_http_and_https_urls_are_linked() -> None:
    reader = read(text_to_html("mail help@shop.example, ftp://x.example, HTTPS://SHOP.EXAMPLE/A"))

    assert reader.anchors == [("HTTPS://SHOP.EXAMPLE/A", "HTTPS://SHOP.EXAMPLE/A")]


def test_markup_in_the_text_is_shown_not_obeyed() -> None:
    text = '<script>alert(1)</script> <a href="https://evil.example">x</a> &amp; <!-- -->'
    reader = read(text_to_html(text))

    assert reader.paragraphs == [[text]]
    assert [tag for tag, _ in reader.tags if tag not in DOCUMENT_TAGS] == ["p", "a"]
    assert reader.anchors == [("https://evil.example", "https://evil.example")]


URL_CHARACTERS = st.sampled_from(list("abcxyz019-._~/?#=&%+;:@!*,()'\"<>[]"))
URLS = st.builds(
    lambda scheme, host, rest: f"{scheme}://{host}.example{rest}",
    st.sampled_from(["http", "https", "HTTPS"]),
    st.text(alphabet="abcz09-", min_size=1, max_size=10),
    st.text(alphabet=URL_CHARACTERS, max_size=30),
)
PIECES = st.one_of(
    st.text(max_size=15),
    URLS,
    st.sampled_from(
        ["\n", "\n\n", "\r\n", " \n \n", " ", ".", ",", ")", "(", "&", "&amp;", "<", ">", '"']
    ),
    st.sampled_from(["<script>alert(1)</script>", "<b onclick='x()'>", "{{ first_name }}"]),
)
TEXTS = st.lists(PIECES, max_size=25).map("".join)


@settings(max_examples=500, deadline=None)
@given(text=TEXTS)
def test_the_visible_text_is_the_text(text: str) -> None:
    reader = read(text_to_html(text))

    shown = " ".join(line for paragraph in reader.paragraphs for line in paragraph)
    assert shown.split() == text.split()


@settings(max_examples=500, deadline=None)
@given(text=TEXTS)
def test_every_url_in_the_text_becomes_exactly_one_link_showing_it(text: str) -> None:
    reader = read(text_to_html(text))

    urls = text_urls(text.replace("\r\n", "\n").replace("\r", "\n"))
    assert reader.anchors == [(url, url) for url in urls]


@settings(max_examples=500, deadline=None)
@given(text=TEXTS)
def test_no_text_makes_a_tag_or_attribute_of_its_own(text: str) -> None:
    reader = read(text_to_html(text))

    made = {(tag, tuple(attributes)) for tag, attributes in reader.tags if tag not in DOCUMENT_TAGS}
    assert made <= {("p", ()), ("br", ()), ("a", ("href",))}
