"""`chainmail segments …` and `chainmail chains import|export|update|list|…`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from bot.runtime import open_database
from bot.settings import Settings
from models.chainfile import InvalidChainFile
from models.chains import export_chain, import_chain, list_chains
from models.db import Database
from models.errors import ChainmailError
from models.segment_rules import Behaviour, condition_words, rule_words
from models.segments import MATCHES, add_segment, delete_segment, list_segments
from services.editing import describe, update_chain
from services.lifecycle import activate_chain, pause_all, pause_chain, resume_chain

ACTOR = "cli"
T = TypeVar("T")


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    segments = commands.add_parser("segments", help="named audiences of main steps")
    sub = segments.add_subparsers(dest="segments_command", required=True, metavar="ACTION")
    add = sub.add_parser("add", help="add a segment (no tags: all customers)")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--tags", default="", help="comma-separated tags, e.g. vip,newsletter")
    add.add_argument("--match", choices=MATCHES, default="any", help="any (default) or all tags")
    add.add_argument(
        "--attribute",
        nargs=3,
        action="append",
        default=[],
        metavar=("KEY", "OPERATOR", "VALUE"),
        help="an attribute condition, e.g. spent greater 1000 (equals|contains|greater|less);"
        " repeat for more, all must hold",
    )
    add.add_argument(
        "--ordered-within", type=int, metavar="DAYS", help="ordered in the last DAYS days"
    )
    add.add_argument("--never-ordered", action="store_true", help="never placed an order")
    add.add_argument(
        "--opened-or-clicked-within",
        type=int,
        metavar="DAYS",
        help="opened or clicked an email in the last DAYS days",
    )
    add.set_defaults(handler=_segments_add)
    sub.add_parser("list", help="list segments").set_defaults(handler=_segments_list)
    delete = sub.add_parser("delete", help="delete a segment no chain uses")
    delete.add_argument("name", metavar="NAME")
    delete.set_defaults(handler=_segments_delete)

    chains = commands.add_parser("chains", help="chains of mailings")
    sub = chains.add_subparsers(dest="chains_command", required=True, metavar="ACTION")
    load = sub.add_parser("import", help="create a draft chain from a chain file")
    load.add_argument("file", type=Path, metavar="FILE")
    load.set_defaults(handler=_chains_import)
    export = sub.add_parser("export", help="print a chain as a chain file")
    export.add_argument("chain_id", type=int, metavar="ID")
    export.set_defaults(handler=_chains_export)
    change = sub.add_parser(
        "update",
        help="apply a chain file to a chain, running or not: all or nothing, with the impact",
    )
    change.add_argument("chain_id", type=int, metavar="ID")
    change.add_argument("file", type=Path, metavar="FILE")
    change.add_argument(
        "--dry-run", action="store_true", help="print the impact and change nothing"
    )
    change.set_defaults(handler=_chains_update)
    sub.add_parser("list", help="list chains").set_defaults(handler=_chains_list)
    for action, handler, text in (
        ("activate", _chains_activate, "start a draft chain"),
        ("pause", _chains_pause, "hold everything of an active chain"),
        ("resume", _chains_resume, "release a paused chain"),
    ):
        command = sub.add_parser(action, help=text)
        command.add_argument("chain_id", type=int, metavar="ID")
        command.set_defaults(handler=handler)
    sub.add_parser("pause-all", help="pause every active chain").set_defaults(
        handler=_chains_pause_all
    )


async def _with_database(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    db = await open_database(settings)
    try:
        return await work(db)
    finally:
        await db.dispose()


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [list(headers), *([str(cell) for cell in row] for row in rows)]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def _behaviour(args: argparse.Namespace) -> list[dict[str, object]]:
    behaviour: list[dict[str, object]] = []
    if args.ordered_within is not None:
        behaviour.append({"behaviour": Behaviour.ORDERED.value, "days": args.ordered_within})
    if args.never_ordered:
        behaviour.append({"behaviour": Behaviour.NEVER_ORDERED.value})
    if args.opened_or_clicked_within is not None:
        days = args.opened_or_clicked_within
        behaviour.append({"behaviour": Behaviour.OPENED_OR_CLICKED.value, "days": days})
    return behaviour


async def _segments_add(settings: Settings, args: argparse.Namespace) -> int:
    tags = args.tags.split(",")
    attributes = [
        {"key": key, "operator": operator, "value": value}
        for key, operator, value in args.attribute
    ]
    segment = await _with_database(
        settings,
        lambda db: add_segment(
            db,
            args.name,
            tags,
            args.match,
            actor=ACTOR,
            attributes=attributes,
            behaviour=_behaviour(args),
        ),
    )
    print(f"segment {segment.name}: {rule_words(segment)}")
    return 0


async def _segments_list(settings: Settings, _args: argparse.Namespace) -> int:
    segments = await _with_database(settings, list_segments)
    if not segments:
        print("no segments yet: add one with `chainmail segments add NAME`")
        return 0
    rows = [
        (
            s.name,
            s.match if s.tags else "-",
            ", ".join(s.tags) or ("(all customers)" if not (s.attributes or s.behaviour) else "-"),
            "; ".join(condition_words(c) for c in (*s.attributes, *s.behaviour)),
        )
        for s in segments
    ]
    print(_table(("NAME", "MATCH", "TAGS", "CONDITIONS"), rows))
    return 0


async def _segments_delete(settings: Settings, args: argparse.Namespace) -> int:
    await _with_database(settings, lambda db: delete_segment(db, args.name, actor=ACTOR))
    print(f"segment {args.name} deleted")
    return 0


def _chain_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ChainmailError(f"cannot read {path}: {exc}") from None


def _refused(exc: InvalidChainFile) -> int:
    # Every problem on its own line, path first, for people and for grep.
    for problem in exc.problems:
        print(problem, file=sys.stderr)
    return 1


async def _chains_import(settings: Settings, args: argparse.Namespace) -> int:
    text = _chain_file(args.file)
    try:
        result = await _with_database(
            settings,
            lambda db: import_chain(db, text, actor=ACTOR, sms_frame=settings.sms_frame),
        )
    except InvalidChainFile as exc:
        return _refused(exc)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(result.chain_id)
    return 0


async def _chains_export(settings: Settings, args: argparse.Namespace) -> int:
    document = await _with_database(settings, lambda db: export_chain(db, args.chain_id))
    sys.stdout.write(document)
    return 0


async def _chains_update(settings: Settings, args: argparse.Namespace) -> int:
    text = _chain_file(args.file)
    now = datetime.now(UTC)
    try:
        impacts = await _with_database(
            settings,
            lambda db: update_chain(
                db,
                args.chain_id,
                text,
                actor=ACTOR,
                dry_run=args.dry_run,
                now=now,
                sms_frame=settings.sms_frame,
            ),
        )
    except InvalidChainFile as exc:
        print(f"chain {args.chain_id} not changed:", file=sys.stderr)
        return _refused(exc)
    for impact in impacts:
        print(describe(impact, now))
    if not impacts:
        print(f"chain {args.chain_id}: the file changes nothing")
    elif args.dry_run:
        print(f"dry run: chain {args.chain_id} not changed")
    else:
        print(f"chain {args.chain_id} updated")
    return 0


async def _chains_list(settings: Settings, _args: argparse.Namespace) -> int:
    chains = await _with_database(settings, list_chains)
    if not chains:
        print("no chains yet: import one with `chainmail chains import FILE`")
        return 0
    rows = [
        (
            c.id,
            c.name,
            c.status.value + (f" (held: {c.hold_reason})" if c.hold_reason else ""),
            c.steps,
        )
        for c in chains
    ]
    print(_table(("ID", "NAME", "STATUS", "STEPS"), rows))
    return 0


async def _chains_activate(settings: Settings, args: argparse.Namespace) -> int:
    activation = await _with_database(
        settings, lambda db: activate_chain(db, args.chain_id, actor=ACTOR)
    )
    print(f"chain {activation.chain_id} is active; {activation.enrolled} customers enrolled")
    return 0


async def _chains_pause(settings: Settings, args: argparse.Namespace) -> int:
    await _with_database(settings, lambda db: pause_chain(db, args.chain_id, actor=ACTOR))
    print(f"chain {args.chain_id} is paused")
    return 0


async def _chains_resume(settings: Settings, args: argparse.Namespace) -> int:
    await _with_database(settings, lambda db: resume_chain(db, args.chain_id, actor=ACTOR))
    print(f"chain {args.chain_id} is active")
    return 0


async def _chains_pause_all(settings: Settings, _args: argparse.Namespace) -> int:
    paused = await _with_database(settings, lambda db: pause_all(db, actor=ACTOR))
    print(f"paused {len(paused)} chains" + (f": {', '.join(map(str, paused))}" if paused else ""))
    return 0
