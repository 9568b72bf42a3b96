"""Orders with a life, end to end: customers, orders and their updates through the HTTP
API on uvicorn, the chain's emails through an SMTP server on loopback, opens through each
message's own pixel; every mechanic counted once with its revenue, a default step
counting none of the updates."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from models.chains import import_chain
from models.segments import add_segment
from services.lifecycle import activate_chain
from tests import test_e2e_engine
from tests.test_e2e_engine import World, customers, external_id_of

# The web app on uvicorn, the SMTP server and the engine of the engine's end-to-end tests.
world = test_e2e_engine.world

EVERY_MECHANIC = """
format: chainmail/1
name: Come back
steps:
  - name: Come back
    audience: {segments: [lapsed]}
    action:
      channel: email
      subject: Come back
      text: "Your cart misses you"
      html: "<p>Your cart misses you</p>"
    schedule: {send: now}
    conversion: {window_days: 7, mechanics: [new_order, order_increase, order_restored]}
"""

DEFAULT_GOAL = """
format: chainmail/1
name: Plain
steps:
  - name: Plain
    audience: {segments: [plain]}
    action: {channel: email, subject: Plain, text: "Hello", html: "<p>Hello</p>"}
    schedule: {send: now}
"""


def order(external_id: str, customer: str, amount: str, **more: Any) -> dict[str, Any]:
    return {"external_id": external_id, "customer_external_id": customer, "amount": amount, **more}


async def test_each_mechanic_counts_once_with_its_revenue_and_a_default_step_none(
    world: World,
) -> None:
    people = customers(6)
    for person in people:
        person["tags"] = ["lapsed"] if int(person["external_id"][1:]) < 4 else ["plain"]
    assert (await world.api("/api/v1/customers", people))["created"] == 6
    await add_segment(world.db, "lapsed", ["lapsed"], "any", actor="test")
    await add_segment(world.db, "plain", ["plain"], "any", actor="test")
    placed_before = [
        order("grows", "c0", "1000.00"),
        order("restored", "c1", "500.00", status="cancelled"),
        order("stays", "c2", "700.00"),
        order("plain-grows", "c4", "900.00"),
    ]
    answer = await world.api("/api/v1/orders", placed_before)
    assert answer == {"created": 4, "updated": 0, "duplicates": 0, "errors": []}
    await asyncio.sleep(0.01)
    come_back = (await import_chain(world.db, EVERY_MECHANIC, actor="test")).chain_id
    plain = (await import_chain(world.db, DEFAULT_GOAL, actor="test")).chain_id
    await activate_chain(world.db, come_back, actor="test")
    await activate_chain(world.db, plain, actor="test")

    await world.engine.tick()
    received = {external_id_of(m): m for m in world.smtp.messages}
    assert sorted(received) == ["c0", "c1", "c2", "c3", "c4", "c5"]
    for customer in received:
        await world.open_pixel(received[customer])

    # After the messages: c0's order grows twice (one conversion, its increase), c1's
    # cancelled order is restored, c2's is re-sent unchanged (a duplicate), c3 and c5
    # place new ones; c4's grows, which the plain chain's default goal does not count.
    first = await world.api(
        "/api/v1/orders",
        [
            order("grows", "c0", "1300.00"),
            order("restored", "c1", "500.00", status="new"),
            order("stays", "c2", "700"),
            order("new-c3", "c3", "250.00"),
            order("plain-grows", "c4", "1900.00"),
            order("new-c5", "c5", "80.00"),
        ],
    )
    again = await world.api("/api/v1/orders", [order("grows", "c0", "1400.00", status="paid")])
    repeated = await world.api("/api/v1/orders", [order("grows", "c0", "1400.00")])

    assert first == {"created": 2, "updated": 3, "duplicates": 1, "errors": []}
    assert again == {"created": 0, "updated": 1, "duplicates": 0, "errors": []}
    assert repeated == {"created": 0, "updated": 0, "duplicates": 1, "errors": []}
    [step] = await world.stats(come_back)
    assert (step["sent"], step["opened"]) == (4, 4)
    # 400 grown + 500 restored + 250 new.
    assert (step["orders"], Decimal(step["revenue"])) == (3, Decimal("1150.00"))
    assert step["conversion_rate"] == 0.75
    [plain_step] = await world.stats(plain)
    assert (plain_step["orders"], Decimal(plain_step["revenue"])) == (1, Decimal("80.00"))
