"""CSV files read a batch of good rows at a time, with their refused lines: the customers'
and the orders' imports (SPEC §7) read files the same way.

Files are read as UTF-8 (with or without BOM) unless their first non-ASCII bytes are
not UTF-8, then as cp1251; `,` or `;` separated (whichever the first line has more
of). A line that does not decode in the chosen encoding (a file pasted together from
two encodings) is refused like any other bad line, as are lines too long, quotes left
open (the lines after them are read on their own), a wrong number of columns and NUL
characters; each kind of file says which columns it has and how a row is checked
(`CsvColumns`). Refused lines are reported by their line number in the file.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from i18n import N_, Phrase, _
from models.errors import ChainmailError

# What people read when a line or a file is refused.
WRONG_COLUMN_COUNT = N_("expected {expected} columns, found {found}")
NOT_DECODABLE = N_("not {encoding} text: save the whole file in one encoding, UTF-8 preferably")
NOT_STORABLE = N_("contains a NUL character or a lone surrogate, which no database stores")
LINE_TOO_LONG = N_("this line is longer than {limit} characters")
# A quote left open swallows the lines after it into one field: those lines are read
# again as rows of their own, and the line where the quote opened is refused.
QUOTE_NOT_CLOSED = N_(
    "a quote opened on this line is never closed: the lines after it were read on their own"
)
QUOTE_TOO_LONG = N_(
    "a quote opened on this line runs over more than {limit} lines: "
    "the lines after it were read on their own"
)
QUOTED_ROW_UNREADABLE = N_(
    "cannot read the quoted field opened on this line ({reason}): "
    "the lines after it were read on their own"
)
QUOTED_ROW_WRONG_COLUMNS = N_(
    "a quote opened on this line runs over {lines} lines and leaves {found} columns, not "
    "{expected}: the lines after it were read on their own"
)
HEADER_NOT_ONE_LINE = N_("{name}: line 1 opens a quote that it does not close")
HEADER_UNREADABLE = N_("{name}: cannot read line 1: {reason}")
HEADER_TOO_LONG = N_("{name}: line 1 is longer than {limit} characters (is it a CSV file?)")
FILE_UNREADABLE = N_("cannot read {name}: {reason}")
FILE_EMPTY = N_("{name} is empty")
MISSING_COLUMN = N_("{name} has no {column} column in its first line (found: {found})")
DUPLICATE_COLUMN = N_("{name} has the column {column} twice")

# A million-line garbage file must not keep a million reasons in memory.
MAX_KEPT_ERRORS = 1_000
# A line is read at most this long, so a file of one 200 MB line is refused in bounded
# memory; a good row is a few hundred characters.
MAX_LINE_CHARS = 1 << 20
# A quoted value may span lines (an address in an attribute column); one spanning more
# is a quote left open, swallowing the rows after it.
MAX_ROW_LINES = 20
_SAMPLE_BYTES = 1 << 16
_NON_ASCII = re.compile(rb"[\x80-\xff]")
# `surrogateescape` turns bytes that do not decode into these code points.
_UNDECODED = re.compile("[\udc80-\udcff]")
# A refused value is quoted in the reason; a garbage cell must not make a huge reason.
SHOWN_MAX = 60


def shown(value: str) -> str:
    """A value quoted in a reason, cut short: a garbage cell must not make a huge one."""
    if len(value) > SHOWN_MAX:
        value = value[:SHOWN_MAX] + "…"
    return repr(value)


@dataclass(frozen=True, slots=True)
class LineError:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"

    def translated(self) -> str:
        reason = self.reason.translated() if isinstance(self.reason, Phrase) else self.reason
        return _("line {line}: {reason}").format(line=self.line, reason=reason)


@dataclass(frozen=True, slots=True)
class ImportProgress:
    bytes_read: int
    total_bytes: int
    lines: int


# --- Reading ---------------------------------------------------------------------------

CsvSource = str | os.PathLike[str] | BinaryIO
_ENCODING_NAMES = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8", "cp1251": "cp1251"}


def _detect_encoding(stream: BinaryIO) -> str:
    """UTF-8 with BOM, else UTF-8 when the first non-ASCII bytes are UTF-8, else cp1251.

    Looking at the first non-ASCII bytes rather than the first chunk: a cp1251 file can
    run for megabytes of Latin-only lines before its first Cyrillic name.
    """
    start = stream.tell()
    try:
        if stream.read(len(codecs.BOM_UTF8)) == codecs.BOM_UTF8:
            return "utf-8-sig"
        stream.seek(start)
        while chunk := stream.read(_SAMPLE_BYTES):
            if chunk.isascii():
                continue
            first = _NON_ASCII.search(chunk)
            assert first is not None
            # The rest of that line only: a later line in another encoding is that
            # line's problem, not the file's.
            sample = (chunk[first.start() :] + stream.read(_SAMPLE_BYTES)).split(b"\n", 1)[0]
            try:
                # Not final: the sample may end inside a character.
                codecs.getincrementaldecoder("utf-8")().decode(sample[:_SAMPLE_BYTES], final=False)
            except UnicodeDecodeError:
                return "cp1251"
            return "utf-8"
        return "utf-8"
    finally:
        stream.seek(start)


def _stream_size(stream: BinaryIO) -> int:
    start = stream.tell()
    size = stream.seek(0, io.SEEK_END) - start
    stream.seek(start)
    return size


@dataclass(frozen=True)
class CsvColumns:
    """What a kind of file holds: its columns (found whatever their case), those it must
    have, and how a row becomes a record to store, or the reason it is refused."""

    known: tuple[str, ...]
    required: tuple[str, ...]
    # A row as {column: text} → the record, or why not. The other columns' cells go in
    # under `extra_key` as {title: text or None}, when the file may have others.
    check: Callable[[dict[str, object]], Any]
    extra_key: str | None = None
    # Each record comes as (its line, the record): a reason found when it is stored
    # names the line too.
    numbered: bool = False


@dataclass(frozen=True, slots=True)
class _Columns:
    width: int
    known: list[tuple[int, str]]
    extra: list[tuple[int, str]]


def _columns(header: list[str], name: str, spec: CsvColumns) -> _Columns:
    known: list[tuple[int, str]] = []
    extra: list[tuple[int, str]] = []
    seen: set[str] = set()
    for index, title in enumerate(header):
        title = title.strip()
        # Spreadsheets add unnamed columns at the right: there is nothing to call them.
        if not title:
            continue
        key = title.lower() if title.lower() in spec.known else title
        if key in seen:
            raise ChainmailError(Phrase(DUPLICATE_COLUMN, name=name, column=shown(key)))
        seen.add(key)
        (known if key in spec.known else extra).append((index, key))
    for column in spec.required:
        if column not in seen:
            found = ", ".join(title.strip() for title in header) or "nothing"
            raise ChainmailError(
                Phrase(MISSING_COLUMN, name=name, column=column, found=found[:200])
            )
    return _Columns(width=len(header), known=known, extra=extra)


class Chunk(NamedTuple):
    """What reading the next rows of a file gave: its good rows, and its refused lines."""

    records: list[Any]
    refused: int
    # The refused lines of this chunk that are kept with a reason (MAX_KEPT_ERRORS in all).
    errors: list[LineError]
    # Where the reading stood at the end of this chunk.
    progress: ImportProgress


class _LineTooLong(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


class _RowTooLong(Exception):
    """A quoted field ran on over more than MAX_ROW_LINES lines."""


class _Lines:
    """The lines of a CSV file as the csv reader takes them, each line at most
    MAX_LINE_CHARS long, with the lines of the row being read kept in `taken`: a row
    found to be a quote left open gives its lines back (`again`) to be read on their own.
    """

    __slots__ = ("_again", "_readline", "ended_in_row", "number", "read", "taken")

    def __init__(self, text: io.TextIOWrapper) -> None:
        self._readline = text.readline
        # Lines to read again, the next one last: (line number, line).
        self._again: list[tuple[int, str]] = []
        # Lines read from the file so far.
        self.read = 0
        # The number of the last line given to the reader.
        self.number = 0
        self.taken: list[str] = []
        # The file ended inside a row: the reader was in a quoted field.
        self.ended_in_row = False

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        taken = self.taken
        if self._again:
            self.number, line = self._again.pop()
        else:
            line = self._readline(MAX_LINE_CHARS)
            if not line:
                self.ended_in_row = bool(taken)
                raise StopIteration
            self.read += 1
            self.number = self.read
            if len(line) == MAX_LINE_CHARS and line[-1] not in "\r\n":
                self._skip_rest_of_line()
                raise _LineTooLong(self.number)
        taken.append(line)
        if len(taken) > MAX_ROW_LINES:
            raise _RowTooLong
        return line

    def _skip_rest_of_line(self) -> None:
        rest = self._readline(MAX_LINE_CHARS)
        while rest and rest[-1] not in "\r\n":
            rest = self._readline(MAX_LINE_CHARS)

    def next_row(self) -> int:
        """Start a row; the number of its first line."""
        self.taken = []
        self.ended_in_row = False
        return self.number + 1 if not self._again else self._again[-1][0]

    def read_again(self, first: int, lines: list[str]) -> None:
        """Give `lines`, numbered from `first`, to the reader again."""
        self._again.extend(reversed(list(enumerate(lines, first))))


class CsvBatches:
    """A CSV file read a batch of good rows at a time, with its refused lines."""

    def __init__(self, stream: BinaryIO, name: str, columns: CsvColumns) -> None:
        if not stream.seekable():
            raise ValueError("the CSV stream must be seekable")
        self._stream = stream
        self._start = stream.tell()
        self._total = _stream_size(stream)
        encoding = _detect_encoding(stream)
        self._encoding_name = _ENCODING_NAMES[encoding]
        self._spec = columns
        self._done = False
        self._refused = 0
        self._kept = 0
        self._errors: list[LineError] = []
        self._text = io.TextIOWrapper(
            stream, encoding=encoding, errors="surrogateescape", newline=""
        )
        try:
            self._lines = _Lines(self._text)
            self._rows, self._columns = self._header(name)
        except BaseException:
            self.close()
            raise

    def _header(self, name: str) -> tuple[Iterator[list[str]], _Columns]:
        lines = self._lines
        lines.next_row()
        try:
            first = next(lines)
        except StopIteration:
            raise ChainmailError(Phrase(FILE_EMPTY, name=name)) from None
        except _LineTooLong:
            raise ChainmailError(Phrase(HEADER_TOO_LONG, name=name, limit=MAX_LINE_CHARS)) from None
        delimiter = ";" if first.count(";") > first.count(",") else ","
        lines.read_again(1, [first])
        lines.next_row()
        rows = csv.reader(lines, delimiter=delimiter)
        try:
            header = next(rows)
        except csv.Error as exc:
            raise ChainmailError(Phrase(HEADER_UNREADABLE, name=name, reason=exc)) from None
        except (_LineTooLong, _RowTooLong):
            raise ChainmailError(Phrase(HEADER_NOT_ONE_LINE, name=name)) from None
        if len(lines.taken) > 1 or lines.ended_in_row:
            raise ChainmailError(Phrase(HEADER_NOT_ONE_LINE, name=name))
        return rows, _columns(header, name, self._spec)

    @property
    def other_columns(self) -> list[str]:
        """The titles of the columns the kind of file does not know, as written."""
        return [title for _, title in self._columns.extra]

    def close(self) -> None:
        # Leave the caller's stream open: closing the wrapper would close it too.
        self._text.detach()

    def _progress(self) -> ImportProgress:
        read = self._stream.tell() - self._start
        return ImportProgress(read, self._total, self._lines.read)

    def _refuse(self, line: int, reason: str) -> None:
        self._refused += 1
        if self._kept < MAX_KEPT_ERRORS:
            self._kept += 1
            self._errors.append(LineError(line, reason))

    def _quote_left_open(self, line: int, reason: str) -> None:
        """Refuse the row starting at `line` and read the lines after it on their own."""
        self._refuse(line, reason)
        self._lines.read_again(line + 1, self._lines.taken[1:])

    def next_chunk(self, size: int) -> Chunk | None:
        """The next `size` rows; None at the end of the file."""
        if self._done:
            return None
        rows, columns, lines = self._rows, self._columns, self._lines
        check, extra_key, numbered = self._spec.check, self._spec.extra_key, self._spec.numbered
        batch: list[Any] = []
        for _row in range(size):
            line = lines.next_row()
            try:
                row = next(rows)
            except StopIteration:
                self._done = True
                break
            except _LineTooLong as exc:
                if lines.taken:
                    reason = f"it runs into line {exc.line}, which is too long"
                    self._quote_left_open(line, Phrase(QUOTED_ROW_UNREADABLE, reason=reason))
                self._refuse(exc.line, Phrase(LINE_TOO_LONG, limit=MAX_LINE_CHARS))
                continue
            except _RowTooLong:
                self._quote_left_open(line, Phrase(QUOTE_TOO_LONG, limit=MAX_ROW_LINES))
                continue
            except csv.Error as exc:
                self._quote_left_open(line, Phrase(QUOTED_ROW_UNREADABLE, reason=exc))
                continue
            if lines.ended_in_row:
                self._quote_left_open(line, QUOTE_NOT_CLOSED)
                continue
            if not row:
                continue
            if len(row) != columns.width:
                if len(lines.taken) > 1:
                    self._quote_left_open(
                        line,
                        Phrase(
                            QUOTED_ROW_WRONG_COLUMNS,
                            lines=len(lines.taken),
                            found=len(row),
                            expected=columns.width,
                        ),
                    )
                else:
                    self._refuse(
                        line, Phrase(WRONG_COLUMN_COUNT, expected=columns.width, found=len(row))
                    )
                continue
            text = "".join(row)
            if _UNDECODED.search(text):
                self._refuse(line, Phrase(NOT_DECODABLE, encoding=self._encoding_name))
                continue
            if "\x00" in text:
                self._refuse(line, NOT_STORABLE)
                continue
            record: dict[str, object] = {key: row[index] for index, key in columns.known}
            if columns.extra and extra_key:
                record[extra_key] = {
                    key: row[index].strip() or None for index, key in columns.extra
                }
            checked = check(record)
            if isinstance(checked, str):
                self._refuse(line, checked)
            else:
                batch.append((line, checked) if numbered else checked)
        chunk = Chunk(batch, self._refused, self._errors, self._progress())
        self._refused, self._errors = 0, []
        return chunk


@contextmanager
def binary(source: CsvSource) -> Iterator[tuple[BinaryIO, str]]:
    if not isinstance(source, str | os.PathLike):
        yield source, getattr(source, "name", "the file")
        return
    path = Path(source)
    try:
        stream = path.open("rb")
    except OSError as exc:
        raise ChainmailError(
            Phrase(FILE_UNREADABLE, name=path, reason=exc.strerror or exc)
        ) from None
    with stream:
        yield stream, str(path)
