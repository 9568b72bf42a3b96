"""Formatted text as Telegram reads it: HTML, MarkdownV2 and Markdown into plain text and
entities, with offsets and lengths in UTF-16 code units; and the entities a client
marks in what a user types (bot commands, @mentions).

Errors are TDLib's, at the same UTF-8 byte offsets, so a bot sees the refusal it
would get from Telegram.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

JsonDict = dict[str, Any]


class EntityParseError(ValueError):
    """Formatted text Telegram refuses; the message is what follows "can't parse entities: "."""


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units: the unit of entity offsets and lengths."""
    return len(text.encode("utf-16-le")) // 2


def _byte_offset(source: str, index: int) -> int:
    # Telegram reports parse errors at UTF-8 byte offsets into the text it was sent.
    return len(source[:index].encode())


def sorted_entities(entities: list[JsonDict]) -> list[JsonDict]:
    return sorted(entities, key=lambda entity: (entity["offset"], -entity["length"]))


class _TextBuilder:
    def __init__(self) -> None:
        self._parts: list[str] = []
        self.position = 0
        self.entities: list[JsonDict] = []

    def add(self, text: str) -> None:
        self._parts.append(text)
        self.position += utf16_length(text)

    def entity(
        self, entity_type: str, start: int, end: int | None = None, extra: JsonDict | None = None
    ) -> None:
        end = self.position if end is None else end
        if end > start:
            self.entities.append(
                {"type": entity_type, "offset": start, "length": end - start, **(extra or {})}
            )

    def result(self) -> tuple[str, list[JsonDict]]:
        return "".join(self._parts), sorted_entities(self.entities)


_HTML_ENTITY_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "code": "code",
    "pre": "pre",
    "a": "text_link",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}


class _HtmlEntityParser(HTMLParser):
    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self._source = source
        self._line_starts = [0, *(match.end() for match in re.finditer("\n", source))]
        self.text = _TextBuilder()
        # (tag, entity type or None when folded into its parent, its fields, start)
        self._open: list[tuple[str, str | None, JsonDict, int]] = []

    def _at(self) -> int:
        line, column = self.getpos()
        return _byte_offset(self._source, self._line_starts[line - 1] + column)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        entity_type = _HTML_ENTITY_TYPES.get(tag)
        if tag == "span" and attributes.get("class") != "tg-spoiler":
            entity_type = None
        if entity_type is None:
            raise EntityParseError(f'Unsupported start tag "{tag}" at byte offset {self._at()}')
        fields: JsonDict = {}
        if tag == "a":
            fields["url"] = attributes.get("href") or ""
        elif tag == "blockquote" and "expandable" in attributes:
            entity_type = "expandable_blockquote"
        elif tag == "tg-emoji":
            fields["custom_emoji_id"] = attributes.get("emoji-id") or ""
        elif tag == "code" and self._open and self._open[-1][0] == "pre":
            # <pre><code class="language-x"> is one pre entity with a language.
            language = (attributes.get("class") or "").removeprefix("language-")
            if language:
                self._open[-1][2]["language"] = language
            entity_type = None
        self._open.append((tag, entity_type, fields, self.text.position))

    def handle_endtag(self, tag: str) -> None:
        if not self._open:
            raise EntityParseError(f"Unexpected end tag at byte offset {self._at()}")
        open_tag, entity_type, fields, start = self._open.pop()
        if open_tag != tag:
            raise EntityParseError(
                f'Unmatched end tag at byte offset {self._at()}, expected "</{open_tag}>", '
                f'found "</{tag}>"'
            )
        if entity_type is not None:
            self.text.entity(entity_type, start, extra=fields)

    def handle_data(self, data: str) -> None:
        self.text.add(data)

    def parse(self) -> tuple[str, list[JsonDict]]:
        self.feed(self._source)
        self.close()
        if self._open:
            raise EntityParseError(
                f'Can\'t find end tag corresponding to start tag "{self._open[-1][0]}"'
            )
        return self.text.result()


_MARKDOWN_V2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MARKDOWN_V2_TYPES = {
    "*": "bold",
    "_": "italic",
    "__": "underline",
    "~": "strikethrough",
    "||": "spoiler",
}
# How TDLib names entity types in "Can't find end of … entity" errors.
_TDLIB_ENTITY_NAMES = {
    "*": "Bold",
    "_": "Italic",
    "__": "Underline",
    "~": "Strikethrough",
    "||": "Spoiler",
    "[": "TextUrl",
    "![": "CustomEmoji",
}


def _reserved(character: str) -> EntityParseError:
    return EntityParseError(
        f"Character '{character}' is reserved and must be escaped with the preceding '\\'"
    )


def _read_until(source: str, start: int, closing: str, escapable: str) -> tuple[str, int] | None:
    """Text up to `closing` (with `\\` escaping `escapable`) and the index just past it."""
    parts: list[str] = []
    index = start
    while index < len(source):
        if source.startswith(closing, index):
            return "".join(parts), index + len(closing)
        if source[index] == "\\" and index + 1 < len(source) and source[index + 1] in escapable:
            index += 1
        parts.append(source[index])
        index += 1
    return None


def _split_pre(content: str) -> tuple[str, str]:
    """(language, code) of a ``` block: a first line without spaces names the language."""
    first_line, newline, rest = content.partition("\n")
    if newline and not re.search(r"\s", first_line):
        return first_line, rest
    return "", content


def _parse_markdown_v2(source: str) -> tuple[str, list[JsonDict]]:
    text = _TextBuilder()
    # (marker, output position where the entity starts, source index of the marker)
    open_entities: list[tuple[str, int, int]] = []
    quote_start: int | None = None
    index = 0
    while index < len(source):
        character = source[index]
        if index == 0 or source[index - 1] == "\n":
            if character == ">":
                quote_start = text.position if quote_start is None else quote_start
                index += 1
                continue
            if quote_start is not None:
                # The quote ended with the previous line; its newline is not quoted.
                text.entity("blockquote", quote_start, text.position - 1)
                quote_start = None
        if character == "\\" and index + 1 < len(source) and 0 < ord(source[index + 1]) < 127:
            text.add(source[index + 1])
            index += 2
        elif source.startswith("```", index):
            found = _read_until(source, index + 3, "```", "`\\")
            if found is None:
                raise EntityParseError(
                    f"Can't find end of Pre entity at byte offset {_byte_offset(source, index)}"
                )
            language, code = _split_pre(found[0])
            start = text.position
            text.add(code)
            text.entity("pre", start, extra={"language": language} if language else None)
            index = found[1]
        elif character == "`":
            found = _read_until(source, index + 1, "`", "`\\")
            if found is None:
                raise EntityParseError(
                    f"Can't find end of Code entity at byte offset {_byte_offset(source, index)}"
                )
            start = text.position
            text.add(found[0])
            text.entity("code", start)
            index = found[1]
        elif source.startswith("![", index) or character == "[":
            marker = "![" if character == "!" else "["
            open_entities.append((marker, text.position, index))
            index += len(marker)
        elif character == "]":
            if not open_entities or open_entities[-1][0] not in {"[", "!["}:
                raise _reserved("]")
            marker, start, _ = open_entities.pop()
            index += 1
            if not source.startswith("(", index):
                if marker == "![":
                    raise EntityParseError("Custom emoji entity must contain a tg://emoji URL")
                continue
            found = _read_until(source, index + 1, ")", ")\\")
            if found is None:
                raise EntityParseError(
                    f"Can't find end of a URL at byte offset {_byte_offset(source, index)}"
                )
            url, index = found
            if marker == "![":
                emoji = re.fullmatch(r"tg://emoji\?id=(\d+)", url)
                if emoji is None:
                    raise EntityParseError("Custom emoji URL must have an emoji identifier")
                text.entity("custom_emoji", start, extra={"custom_emoji_id": emoji[1]})
            else:
                text.entity("text_link", start, extra={"url": url})
        elif character in "*_~|":
            marker = character
            if source.startswith("__", index) or source.startswith("||", index):
                marker = character * 2
            elif character == "|":
                raise _reserved("|")
            if open_entities and open_entities[-1][0] == marker:
                _, start, _ = open_entities.pop()
                text.entity(_MARKDOWN_V2_TYPES[marker], start)
            elif any(opened == marker for opened, _, _ in open_entities):
                inner, _, at = open_entities[-1]
                raise EntityParseError(
                    f"Can't find end of {_TDLIB_ENTITY_NAMES[inner]} entity at byte offset "
                    f"{_byte_offset(source, at)}"
                )
            else:
                open_entities.append((marker, text.position, index))
            index += len(marker)
        elif character in _MARKDOWN_V2_RESERVED:
            raise _reserved(character)
        else:
            text.add(character)
            index += 1
    if open_entities:
        marker, _, at = open_entities[-1]
        raise EntityParseError(
            f"Can't find end of {_TDLIB_ENTITY_NAMES[marker]} entity at byte offset "
            f"{_byte_offset(source, at)}"
        )
    if quote_start is not None:
        text.entity("blockquote", quote_start)
    return text.result()


_MARKDOWN_LINK = re.compile(r"\[([^\]]*)\]\(([^)]*)\)")


def _parse_markdown(source: str) -> tuple[str, list[JsonDict]]:
    """Legacy Markdown: *bold*, _italic_, `code`, ```pre```, [text](url); no nesting."""
    text = _TextBuilder()
    index = 0

    def unclosed() -> EntityParseError:
        return EntityParseError(
            f"Can't find end of the entity starting at byte offset {_byte_offset(source, index)}"
        )

    while index < len(source):
        character = source[index]
        if character == "\\" and index + 1 < len(source) and source[index + 1] in "_*`[":
            text.add(source[index + 1])
            index += 2
        elif character in "*_`":
            marker = "```" if source.startswith("```", index) else character
            end = source.find(marker, index + len(marker))
            if end < 0:
                raise unclosed()
            content = source[index + len(marker) : end]
            start = text.position
            if marker == "```":
                language, code = _split_pre(content)
                text.add(code)
                text.entity("pre", start, extra={"language": language} if language else None)
            else:
                text.add(content)
                text.entity({"*": "bold", "_": "italic", "`": "code"}[marker], start)
            index = end + len(marker)
        elif character == "[":
            link = _MARKDOWN_LINK.match(source, index)
            if link is None:
                raise unclosed()
            start = text.position
            text.add(link[1])
            text.entity("text_link", start, extra={"url": link[2]})
            index = link.end()
        else:
            text.add(character)
            index += 1
    return text.result()


def parse_formatted_text(text: str, parse_mode: str) -> tuple[str, list[JsonDict]]:
    """Plain text and entities of `text` in `parse_mode` ("HTML", "MarkdownV2", "Markdown").

    Raises EntityParseError where Telegram answers "can't parse entities", and
    ValueError for a parse mode Telegram does not know.
    """
    parsers = {
        "html": lambda: _HtmlEntityParser(text).parse(),
        "markdownv2": lambda: _parse_markdown_v2(text),
        "markdown": lambda: _parse_markdown(text),
    }
    parser = parsers.get(parse_mode.lower())
    if parser is None:
        raise ValueError(f"unsupported parse_mode {parse_mode!r}")
    return parser()


def trimmed(text: str, entities: list[JsonDict]) -> tuple[str, list[JsonDict]]:
    """Telegram drops leading and trailing whitespace, shifting entities to match."""
    without_lead = text.lstrip()
    lead = utf16_length(text) - utf16_length(without_lead)
    trimmed = without_lead.rstrip()
    total = utf16_length(trimmed)
    kept = []
    for entity in entities:
        start = max(entity["offset"] - lead, 0)
        end = min(entity["offset"] + entity["length"] - lead, total)
        if end > start:
            kept.append({**entity, "offset": start, "length": end - start})
    return trimmed, kept


BOT_COMMAND = re.compile(r"(?<!\S)/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?")
_MENTION = re.compile(r"(?<![\w@/])@[A-Za-z0-9_]{5,32}")


def user_text_entities(text: str) -> list[JsonDict]:
    """What Telegram's clients mark in a typed message: bot commands and @mentions."""
    entities = [
        {
            "type": kind,
            "offset": utf16_length(text[: match.start()]),
            "length": utf16_length(match[0]),
        }
        for kind, pattern in (("bot_command", BOT_COMMAND), ("mention", _MENTION))
        for match in pattern.finditer(text)
    ]
    return sorted_entities(entities)
