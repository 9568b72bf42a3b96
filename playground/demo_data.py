"""The playground's people and demo data, stored once through the real services.

On first start: a few hundred customers across Russia's time zones (the zone
comes from the phone, as for a real import, or is given for some), two
segments, an admin and a viewer, and the seed's example chain as a draft. A
mark in `app_state` says it was done; every part is also safe to repeat, so a
start interrupted half-way finishes the job next time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.admins import add_admin
from models.chains import import_chain, list_chains
from models.customers import save_customers
from models.db import Database, insert_ignoring_conflicts
from models.segments import add_segment, list_segments
from models.tables import AppState, Role
from playground import texts

DEMO_DATA_MARK = "playground_demo_data"
ACTOR = "playground"


@dataclass(frozen=True)
class DemoUser:
    key: str
    id: int
    first_name: str
    username: str
    role: Role | None

    @property
    def role_name(self) -> str:
        return texts.ROLE_NAMES[self.key]


OWNER = DemoUser("owner", 1001, "Olga", "olga_owner", Role.OWNER)
ADMIN = DemoUser("admin", 1002, "Anton", "anton_admin", Role.ADMIN)
VIEWER = DemoUser("viewer", 1003, "Vera", "vera_viewer", Role.VIEWER)
STRANGER = DemoUser("stranger", 1004, "Stas", "stas_stranger", None)
DEMO_USERS = (OWNER, ADMIN, VIEWER, STRANGER)
GROUP_CHAT_ID = -4242

CUSTOMER_COUNT = 300
SEGMENTS = {"newsletter": ["newsletter"], "vip": ["vip"]}
CHAIN_NAME = "Spring sale"

# (city, phone prefix after +7): landlines and mobile operator prefixes whose zone
# the import works out itself, from Kaliningrad to Kamchatka.
_PLACES = (
    ("Москва", "495"),
    ("Москва", "912"),
    ("Санкт-Петербург", "812"),
    ("Калининград", "4012"),
    ("Самара", "846"),
    ("Саратов", "908"),
    ("Екатеринбург", "343"),
    ("Екатеринбург", "950"),
    ("Омск", "3812"),
    ("Новосибирск", "383"),
    ("Барнаул", "983"),
    ("Красноярск", "913"),
    ("Иркутск", "3952"),
    ("Якутск", "914"),
    ("Владивосток", "423"),
    ("Петропавловск-Камчатский", "4152"),
)
# Some customers' zones are given by the shop instead of guessed from the phone.
_EXPLICIT_ZONES = ("Asia/Omsk", "Asia/Magadan", "Europe/Samara", "Asia/Chita")
_FIRST_NAMES = (
    ("Анна", "anna", "f"), ("Мария", "maria", "f"), ("Ольга", "olga", "f"),
    ("Елена", "elena", "f"), ("Дарья", "darya", "f"), ("Ирина", "irina", "f"),
    ("Светлана", "svetlana", "f"), ("Иван", "ivan", "m"), ("Алексей", "alexey", "m"),
    ("Дмитрий", "dmitry", "m"), ("Сергей", "sergey", "m"), ("Андрей", "andrey", "m"),
    ("Михаил", "mikhail", "m"), ("Никита", "nikita", "m"), ("Павел", "pavel", "m"),
)  # fmt: skip
_LAST_NAMES = (
    ("Иванов", "ivanov"), ("Смирнов", "smirnov"), ("Кузнецов", "kuznetsov"),
    ("Попов", "popov"), ("Васильев", "vasilyev"), ("Петров", "petrov"),
    ("Соколов", "sokolov"), ("Новиков", "novikov"), ("Морозов", "morozov"),
    ("Волков", "volkov"), ("Лебедев", "lebedev"), ("Козлов", "kozlov"),
)  # fmt: skip


def demo_customers(count: int = CUSTOMER_COUNT, seed: int = 6) -> list[dict[str, Any]]:
    """The same customers on every machine: JSON objects as the shop's API would send."""
    rng = random.Random(seed)
    customers = []
    for number in range(1, count + 1):
        first, first_latin, gender = rng.choice(_FIRST_NAMES)
        last, last_latin = rng.choice(_LAST_NAMES)
        city, prefix = rng.choice(_PLACES)
        tags = [tag for tag, share in (("newsletter", 0.7), ("vip", 0.15), ("new", 0.25))
                if rng.random() < share]  # fmt: skip
        # Newsletter subscribers left both an address and a phone; others may lack one.
        has_email = "newsletter" in tags or rng.random() < 0.9
        has_phone = "newsletter" in tags or rng.random() < 0.8
        if gender == "f":
            last, last_latin = last + "а", last_latin + "a"
        customer: dict[str, Any] = {
            "external_id": f"demo-{number:04d}",
            "first_name": first,
            "last_name": last,
            "tags": tags,
            "attributes": {"city": city},
        }
        if has_email:
            customer["email"] = f"{first_latin}.{last_latin}.{number}@example.com"
        if has_phone:
            digits = "".join(rng.choice("0123456789") for _ in range(10 - len(prefix)))
            customer["phone"] = f"+7{prefix}{digits}"
        if rng.random() < 0.08:
            customer["timezone"] = rng.choice(_EXPLICIT_ZONES)
        customers.append(customer)
    return customers


def chain_file(public_base_url: str) -> str:
    template = (Path(__file__).parent / "demo_chain.yaml").read_text(encoding="utf-8")
    return template.replace("{shop}", f"{public_base_url}/shop")


async def is_seeded(db: Database) -> bool:
    async with db.session() as session:
        return await session.get(AppState, DEMO_DATA_MARK) is not None


async def seed_demo_data(
    db: Database, *, public_base_url: str, default_timezone: str, default_phone_region: str
) -> bool:
    """Store the demo data unless done before; True when it was stored now."""
    if await is_seeded(db):
        return False
    await save_customers(
        db,
        demo_customers(),
        default_timezone=default_timezone,
        default_phone_region=default_phone_region,
        actor=ACTOR,
    )
    existing = {segment.name for segment in await list_segments(db)}
    for name, tags in SEGMENTS.items():
        if name not in existing:
            await add_segment(db, name, tags, actor=ACTOR)
    for user in (ADMIN, VIEWER):
        assert user.role is not None
        await add_admin(db, user.id, user.role, name=user.first_name, actor=ACTOR)
    if not any(chain.name == CHAIN_NAME for chain in await list_chains(db)):
        await import_chain(db, chain_file(public_base_url), actor=ACTOR)
    async with db.writer() as session:
        await session.execute(
            insert_ignoring_conflicts(session, AppState).values(key=DEMO_DATA_MARK, value="1")
        )
    return True
