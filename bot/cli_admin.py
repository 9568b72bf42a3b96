"""`chainmail admins …` and `chainmail migrate`."""

from __future__ import annotations

import argparse

from bot.runtime import open_database, run_migrations
from bot.settings import Settings
from models.admins import add_admin
from models.tables import Role


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    migrate = commands.add_parser("migrate", help="create or upgrade the database schema")
    migrate.set_defaults(handler=_migrate)

    admins = commands.add_parser("admins", help="manage who may use the bot")
    sub = admins.add_subparsers(dest="admins_command", required=True, metavar="ACTION")
    add = sub.add_parser("add", help="allow a Telegram user in as admin or viewer")
    add.add_argument("telegram_id", type=int, metavar="TELEGRAM_ID")
    add.add_argument("--role", choices=[Role.ADMIN.value, Role.VIEWER.value], required=True)
    add.add_argument("--name", default=None, help="a name to show in lists")
    add.set_defaults(handler=_add_admin)


async def _migrate(settings: Settings, _args: argparse.Namespace) -> int:
    await run_migrations(settings.database_url)
    print("database schema is up to date")
    return 0


async def _add_admin(settings: Settings, args: argparse.Namespace) -> int:
    db = await open_database(settings)
    try:
        await add_admin(db, args.telegram_id, Role(args.role), name=args.name, actor="cli")
    finally:
        await db.dispose()
    print(f"{args.telegram_id} is now {args.role}")
    return 0
