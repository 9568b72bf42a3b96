"""What the bot shows, without a database: every message within Telegram's limits,
callback data within 64 bytes, names found the way people type them."""

from __future__ import annotations

from decimal import Decimal

import pytest
from telegram.constants import MessageLimit

from handlers import keyboards, texts
from handlers.callbacks import Action, decode, encode, int_arg, pattern
from handlers.commands import find_chains
from i18n import use_language
from models.chainfile import EmailAction, Match, SegmentsAudience, Term, TermsAudience
from models.chains import ChainSummary, ChainView, StepView
from models.customers import ImportReport, LineError
from models.segments import SegmentInfo
from models.stats import ChainStats, StepStats
from models.tables import ChainStatus, Enrollment, Role

LIMIT = MessageLimit.MAX_TEXT_LENGTH
LONG_NAME = "Очень длинное название шага рассылки " * 6


def busy_step(position: int) -> StepStats:
    return StepStats(
        position=position,
        name=LONG_NAME,
        channel="email" if position % 2 else "sms",
        coverage=9_876_543,
        planned=1_234_567,
        # Of the planned: parked on the terms below, the rest to go.
        waiting_for_terms=234_567,
        sent=8_765_432,
        failed=123_456,
        skipped=654_321,
        uncertain=12_345,
        delivered=8_000_000,
        opened=4_000_000,
        clicked=1_000_000,
        unsubscribed=54_321,
        bounced=175_555,
        complained=8_765,
        orders=98_765,
        revenue=Decimal("123456789.99"),
        conversion_rate=0.0113,
        handed=8_777_777,
        skipped_by_reason={"no email": 400_000, "unsubscribed from email": 254_320, "x": 1},
        terms=("not_opened", "not_clicked"),
        terms_match="any",
    )


def stats(steps: int) -> ChainStats:
    return ChainStats(1, LONG_NAME, "active", [busy_step(n) for n in range(1, steps + 1)])


@pytest.mark.parametrize("steps", [1, 20, 100])
def test_stats_pages_stay_within_the_limit_and_show_every_step(steps: int) -> None:
    pages = texts.stats_pages(stats(steps), currency="RUB")
    assert all(len(page) <= LIMIT for page in pages)
    shown = "".join(pages)
    for position in range(1, steps + 1):
        assert f"<b>{position}. " in shown
    if len(pages) > 1:
        assert f"page 1/{len(pages)}" in pages[0]


def twenty_steps_after_their_waves(bounced: int, complained: int) -> ChainStats:
    # Sent to tens of thousands, some failed and skipped, names of a few words; nothing
    # left to send or uncertain (those come and go while a wave runs).
    steps = [
        StepStats(
            **{
                **vars(busy_step(n)),
                "name": f"Reminder number {n} for the winter sale",
                **{key: 12_345 for key in ("coverage", "sent", "delivered", "handed")},
                **{key: 1_234 for key in ("failed", "skipped", "opened", "clicked")},
                **{key: 123 for key in ("unsubscribed", "orders")},
                "bounced": bounced,
                "complained": complained,
                "planned": 0,
                "waiting_for_terms": 0,
                "uncertain": 0,
                "revenue": Decimal("1234567.89"),
            }
        )
        for n in range(1, 21)
    ]
    return ChainStats(1, "Winter sale, all customers", "active", steps)


def test_a_twenty_step_chain_after_its_waves_fits_one_message() -> None:
    pages = texts.stats_pages(
        twenty_steps_after_their_waves(bounced=0, complained=0), currency="RUB"
    )
    assert len(pages) == 1
    assert len(pages[0]) <= LIMIT


def test_bounces_and_complaints_take_a_line_of_their_own_and_pages_still_fit() -> None:
    pages = texts.stats_pages(
        twenty_steps_after_their_waves(bounced=123, complained=12), currency="RUB"
    )
    assert len(pages) == 2
    assert all(len(page) <= LIMIT for page in pages)
    shown = "\n".join(pages)
    assert shown.count("⚠ bounced 123 (1.00%) · spam 12 (0.10%)") == 20


def test_a_step_reads_on_a_phone() -> None:
    page = texts.stats_pages(stats(1), currency="RUB")[0]
    assert page.splitlines()[2:] == [
        f"<b>1. {LONG_NAME[:39]}…</b> · email",
        "sent 8765432/9876543 · to go 1000000 · failed 123456 · skipped 654321 · uncertain 12345",
        "⏳ 234567 messages wait for their terms (any of: not opened, not clicked): sent only if "
        "they come true in time",
        "opened 4000000 (46%) · clicked 1000000 (11%) · unsub 54321",
        "⚠ bounced 175555 (2.0%) · spam 8765 (0.10%)",
        "🛒 98765 orders · RUB123,456,789.99 · conv. 1.1%",
    ]


def test_a_step_reads_in_russian_with_roubles() -> None:
    with use_language("ru"):
        lines = texts.stats_pages(stats(1), currency="RUB")[0].splitlines()
    assert lines[4].startswith("⏳ 234567 сообщений ждут своих условий (любое из: ")
    assert lines[4].endswith("): уйдут, только если условия выполнятся вовремя")
    assert lines[-1] == "🛒 98765 заказов · 123\xa0456\xa0789,99\xa0₽ · конв. 1,1 %"


def test_an_import_report_with_many_refused_lines_fits_one_message() -> None:
    errors = [LineError(line, f"bad email '{'x' * 60}…'") for line in range(2, 1002)]
    report = ImportReport(created=5, updated=1, refused=5000, errors=errors)
    text = texts.import_report("customers.csv", report)
    assert len(text) <= LIMIT
    lines = text.splitlines()
    assert lines[:3] == [
        "✅ customers.csv: imported 6 customers (5 new, 1 updated).",
        "⚠️ 5000 lines refused:",
        f"line 2: bad email '{'x' * 60}…'",
    ]
    shown = len(lines) - 3
    assert lines[-1] == f"… and {5000 - shown} more"


def test_long_lists_are_cut_to_fit() -> None:
    people = [(10_000_000_000 + n, "viewer", "N" * 200) for n in range(500)]
    assert len(texts.admin_list([1, 2, 3], people)) <= LIMIT
    steps = tuple(
        StepView(n, n, LONG_NAME, SegmentsAudience(("a" * 100,)), EmailAction("s", "t"), None, None)
        for n in range(1, 101)
    )
    chain = ChainView(1, LONG_NAME, ChainStatus.DRAFT, Enrollment.ONCE, "tag", True, steps)
    card = texts.chain_card(chain)
    assert len(card) <= LIMIT
    assert card.endswith(" more")
    segments = [SegmentInfo(n, "s" * 100, ("t" * 100,) * 20, "all") for n in range(15)]
    assert len(texts.segment_list(segments, 0, 1)) <= LIMIT


def test_terms_in_short() -> None:
    audience = TermsAudience(Match.ANY, (Term.NOT_OPENED, Term.UNSUBSCRIBED_EMAIL))
    assert texts.terms_short(audience) == "if not opened or unsubscribed email"


def test_callback_data_is_at_most_64_bytes_and_round_trips() -> None:
    data = encode(Action.CHAIN, 2**63 - 1, 99_999)
    assert len(data.encode()) <= 64
    assert decode(data) == ("chain", [str(2**63 - 1), "99999"])
    with pytest.raises(ValueError, match="longer than 64 bytes"):
        encode(Action.STATS, "x" * 60)
    with pytest.raises(ValueError, match="without ':'"):
        encode(Action.STATS, "a:b")
    assert int_arg(["x"], 0, default=7) == 7


def test_patterns_tell_similar_actions_apart() -> None:
    import re

    assert re.match(pattern(Action.CHAIN), "chain:3:0")
    assert not re.match(pattern(Action.CHAIN), "chains:0")
    assert re.match(pattern(Action.MENU), "menu")


def test_every_keyboard_built_for_big_ids_is_valid() -> None:
    big = ChainSummary(2**62, "x" * 200, ChainStatus.ACTIVE, 3)
    page = keyboards.paginate([big] * 30, 2, keyboards.CHAINS_PER_PAGE)
    markups = [
        keyboards.main_menu(),
        keyboards.chain_list(page),
        keyboards.chain_choices([big], Action.PAUSE),
        keyboards.chain_choices([big], Action.STATS),
        keyboards.reports(page),
        keyboards.stats(big.id, keyboards.paginate(["a", "b"], 1, 1)),
    ]
    for markup in markups:
        for row in markup.inline_keyboard:
            for button in row:
                assert 1 <= len(button.callback_data.encode()) <= 64  # type: ignore[union-attr]


def test_a_page_past_the_end_shows_the_last() -> None:
    page = keyboards.paginate(list(range(10)), 7, 4)
    assert (list(page.items), page.number, page.count) == ([8, 9], 2, 3)
    assert keyboards.paginate([], 0, 4).count == 1


def test_help_shows_each_role_its_commands() -> None:
    assert "/pause" not in texts.help_text(Role.VIEWER)
    assert "/pause" in texts.help_text(Role.ADMIN)
    assert "/admins" not in texts.help_text(Role.ADMIN)
    assert "/admins" in texts.help_text(Role.OWNER)
    assert "/new" in texts.help_text(Role.ADMIN)
    assert "/new" not in texts.help_text(Role.VIEWER)
    assert "/subscribe" not in texts.help_text(Role.VIEWER, group=True)


CHAINS = [
    ChainSummary(1, "Welcome series", ChainStatus.ACTIVE, 3),
    ChainSummary(2, "Welcome", ChainStatus.PAUSED, 1),
    ChainSummary(3, "Winter sale", ChainStatus.DRAFT, 2),
    ChainSummary(12, "Sale 12", ChainStatus.DRAFT, 2),
]


@pytest.mark.parametrize(
    ("query", "ids"),
    [
        ("2", [2]),
        ("#12", [12]),
        ("welcome", [2]),  # the exact name wins over the names containing it
        ("WELCOME SERIES", [1]),
        ("sale", [3, 12]),
        ("autumn", []),
        ("99", []),
    ],
)
def test_chains_are_found_by_id_or_name(query: str, ids: list[int]) -> None:
    assert [chain.id for chain in find_chains(CHAINS, query)] == ids
