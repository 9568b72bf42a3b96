"""What the CLI's file imports share: a progress bar on a terminal, the summary's counts,
the refused lines on stderr."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from models.csv_files import ImportProgress, LineError


def register_import(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    area: str,
    *,
    help: str,
    description: str,
    handler: Callable[..., object],
) -> None:
    """`chainmail AREA import FILE`."""
    parser = commands.add_parser(area, help=f"import and update {area}")
    sub = parser.add_subparsers(dest=f"{area}_command", required=True, metavar="ACTION")
    add = sub.add_parser("import", help=help, description=description)
    add.add_argument("file", type=Path, metavar="FILE")
    add.set_defaults(handler=handler)


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def with_refused(summary: str, refused: int) -> str:
    return f"{summary}; {plural(refused, 'line')} refused" if refused else summary


@contextmanager
def progress_bar() -> Iterator[Callable[[ImportProgress], None]]:
    """A function showing how far the file is read, on stderr when it is a terminal."""
    bar = tqdm(
        unit="B", unit_scale=True, file=sys.stderr, disable=not sys.stderr.isatty(), leave=False
    )

    def show(progress: ImportProgress) -> None:
        bar.total = progress.total_bytes
        bar.update(progress.bytes_read - bar.n)

    try:
        yield show
    finally:
        bar.close()


def report_refusals(refused: int, errors: Sequence[LineError]) -> int:
    """The refused lines kept with a reason, and how many more; the exit code."""
    for error in errors:
        print(error, file=sys.stderr)
    unlisted = refused - len(errors)
    if unlisted:
        print(f"… and {plural(unlisted, 'more refused line')}", file=sys.stderr)
    return 1 if refused else 0
