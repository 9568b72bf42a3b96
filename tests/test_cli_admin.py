"""`chainmail migrate` and `chainmail admins add` against both databases."""

from __future__ import annotations

from pathlib import Path

from models.admins import role_of
from models.db import Database
from models.tables import Role
from tests.cli import chainmail


def test_migrate_creates_a_fresh_sqlite_database(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'new.db'}"
    result = chainmail(url, "migrate", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "new.db").exists()


async def test_admins_add_grants_the_role(db_url: str, db: Database, tmp_path: Path) -> None:
    result = chainmail(db_url, "admins", "add", "4242", "--role", "viewer", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert await role_of(db, 4242, owner_ids=[1]) is Role.VIEWER
    assert await role_of(db, 1, owner_ids=[1]) is Role.OWNER
    assert await role_of(db, 777, owner_ids=[1]) is None


def test_admins_add_refuses_unknown_role(db_url: str, tmp_path: Path) -> None:
    result = chainmail(db_url, "admins", "add", "4242", "--role", "king", cwd=tmp_path)
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
