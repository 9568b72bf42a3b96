"""`chainmail customers import FILE`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tqdm import tqdm

from bot.runtime import open_database
from bot.settings import Settings
from models.customers import ImportProgress, ImportReport, import_customers_csv


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    customers = commands.add_parser("customers", help="import and update customers")
    sub = customers.add_subparsers(dest="customers_command", required=True, metavar="ACTION")
    add = sub.add_parser(
        "import",
        help="add or update customers from a CSV file",
        description=(
            "Columns: external_id (required), email, phone, first_name, last_name, "
            "timezone, tags (';'-separated); any other column becomes an attribute. "
            "UTF-8 or cp1251, ',' or ';' separated. Exit code 1 if any line is refused; "
            "the good lines are imported all the same."
        ),
    )
    add.add_argument("file", type=Path, metavar="FILE")
    add.set_defaults(handler=_import)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _summary(report: ImportReport) -> str:
    line = (
        f"imported {_plural(report.imported, 'customer')} "
        f"({report.created} new, {report.updated} updated)"
    )
    if report.refused:
        line += f"; {_plural(report.refused, 'line')} refused"
    return line


async def _import(settings: Settings, args: argparse.Namespace) -> int:
    db = await open_database(settings)
    bar = tqdm(
        unit="B", unit_scale=True, file=sys.stderr, disable=not sys.stderr.isatty(), leave=False
    )

    def show(progress: ImportProgress) -> None:
        bar.total = progress.total_bytes
        bar.update(progress.bytes_read - bar.n)

    try:
        report = await import_customers_csv(
            db,
            args.file,
            default_timezone=settings.default_timezone,
            default_phone_region=settings.default_phone_region,
            actor="cli",
            progress=show,
            # A child process reads and checks the file while this one writes: each gets
            # a core. Its start (a few tenths of a second) is nothing next to a big file.
            workers=1 if (os.cpu_count() or 1) > 1 else 0,
        )
    finally:
        bar.close()
        await db.dispose()
    print(_summary(report))
    for error in report.errors:
        print(error, file=sys.stderr)
    unlisted = report.refused - len(report.errors)
    if unlisted:
        print(f"… and {_plural(unlisted, 'more refused line')}", file=sys.stderr)
    return 1 if report.refused else 0
