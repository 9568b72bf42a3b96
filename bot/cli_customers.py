"""`chainmail customers import FILE`."""

from __future__ import annotations

import argparse
import os

from bot.cli_files import plural, progress_bar, register_import, report_refusals, with_refused
from bot.runtime import open_database
from bot.settings import Settings
from models.customers import ImportReport, import_customers_csv


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    register_import(
        commands,
        "customers",
        help="add or update customers from a CSV file",
        description=(
            "Columns: external_id (required), email, phone, first_name, last_name, "
            "timezone, tags (';'-separated); any other column becomes an attribute. "
            "UTF-8 or cp1251, ',' or ';' separated. Exit code 1 if any line is refused; "
            "the good lines are imported all the same."
        ),
        handler=_import,
    )


def _summary(report: ImportReport) -> str:
    return with_refused(
        f"imported {plural(report.imported, 'customer')} "
        f"({report.created} new, {report.updated} updated)",
        report.refused,
    )


async def _import(settings: Settings, args: argparse.Namespace) -> int:
    db = await open_database(settings)
    try:
        with progress_bar() as show:
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
        await db.dispose()
    print(_summary(report))
    return report_refusals(report.refused, report.errors)
