"""`chainmail orders import FILE`."""

from __future__ import annotations

import argparse
import sys

from bot.cli_files import plural, progress_bar, register_import, report_refusals, with_refused
from bot.runtime import open_database
from bot.settings import Settings
from models.orders import CSV_COLUMNS, OrdersImportReport, import_orders_csv


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    register_import(
        commands,
        "orders",
        help="add or update orders from a CSV file",
        description=(
            f"Columns: {', '.join(CSV_COLUMNS)}; the first three are required. An order "
            "already stored is updated when its amount or status differ, else counted as "
            "a duplicate; lines are taken in the file's order. UTF-8 or cp1251, ',' or ';' "
            "separated. Exit code 1 if any line is refused; the good lines are imported "
            "all the same."
        ),
        handler=_import,
    )


def summary(report: OrdersImportReport) -> str:
    return with_refused(
        f"imported {plural(report.created + report.updated, 'order')} "
        f"({report.created} new, {report.updated} updated), "
        f"{plural(report.duplicates, 'duplicate')}",
        report.refused,
    )


async def _import(settings: Settings, args: argparse.Namespace) -> int:
    db = await open_database(settings)
    try:
        with progress_bar() as show:
            report = await import_orders_csv(db, args.file, actor="cli", progress=show)
    finally:
        await db.dispose()
    print(summary(report))
    if report.ignored_columns:
        print(f"columns not read: {', '.join(report.ignored_columns)}", file=sys.stderr)
    return report_refusals(report.refused, report.errors)
