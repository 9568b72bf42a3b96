"""Who may use the bot: owners from ADMIN_IDS, admins and viewers from the database."""

from __future__ import annotations

from sqlalchemy import select

from i18n import N_
from models import audit
from models.db import Database
from models.errors import ChainmailError
from models.tables import Admin, Role


async def add_admin(
    db: Database, telegram_id: int, role: Role, *, name: str | None, actor: str
) -> None:
    if role is Role.OWNER:
        raise ChainmailError(N_("owners are set with the ADMIN_IDS setting, not added"))
    async with db.writer() as session:
        admin = await session.get(Admin, telegram_id)
        if admin is None:
            session.add(Admin(telegram_id=telegram_id, role=role, name=name, added_by=actor))
        else:
            admin.role = role
            admin.name = name or admin.name
        audit.record(session, actor, "admin.add", telegram_id=telegram_id, role=role.value)


async def remove_admin(db: Database, telegram_id: int, *, actor: str) -> bool:
    async with db.writer() as session:
        admin = await session.get(Admin, telegram_id)
        if admin is None:
            return False
        await session.delete(admin)
        audit.record(session, actor, "admin.remove", telegram_id=telegram_id)
        return True


async def role_of(db: Database, telegram_id: int, owner_ids: list[int]) -> Role | None:
    if telegram_id in owner_ids:
        return Role.OWNER
    async with db.session() as session:
        role = await session.scalar(select(Admin.role).where(Admin.telegram_id == telegram_id))
    return Role(role) if role else None


async def list_people(db: Database) -> list[tuple[int, str, str | None]]:
    """(Telegram id, role, name) of every admin and viewer, in the order they were added."""
    async with db.session() as session:
        rows = await session.execute(
            select(Admin.telegram_id, Admin.role, Admin.name).order_by(Admin.added_at)
        )
        return [(telegram_id, role, name) for telegram_id, role, name in rows]
