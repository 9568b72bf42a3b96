"""The audit log: who changed what, when — written in the same transaction as the change."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from models.tables import AuditEntry


def record(session: AsyncSession, actor: str, action: str, **details: Any) -> None:
    session.add(AuditEntry(actor=actor, action=action, details=details))
