"""The send-time rules of the claim (`scheduler.claims.decide`): pure, no database, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from models import reasons
from scheduler.claims import CLAIM, Candidate, Decision, decide
from scheduler.timing import in_quiet_hours

QUIET = (time(21, 0), time(9, 0))
NOW = datetime(2026, 12, 1, 12, 30, tzinfo=UTC)  # 15:30 in Moscow, 22:30 in Vladivostok
ZONES = ["Europe/Moscow", "Asia/Vladivostok", "Europe/Kaliningrad", "Asia/Kamchatka", "UTC"]


def sms(zone: str = "Europe/Moscow", **facts: object) -> Candidate:
    values: dict[str, object] = {
        "channel": "sms",
        "terms_hold": None,
        "wait_until": None,
        "contact_refusal": None,
        "timezone": zone,
    }
    values.update(facts)
    return Candidate(**values)  # type: ignore[arg-type]


def test_sms_in_quiet_hours_waits_for_nine_in_the_customers_zone() -> None:
    assert decide(sms("Europe/Moscow"), NOW, QUIET) == CLAIM
    # 22:30 in Vladivostok: it waits until 09:00 there, 23:00 UTC.
    assert decide(sms("Asia/Vladivostok"), NOW, QUIET) == Decision(
        "defer", until=datetime(2026, 12, 1, 23, 0, tzinfo=UTC)
    )
    assert decide(sms("Asia/Vladivostok"), NOW, None) == CLAIM


def test_email_ignores_quiet_hours() -> None:
    email = Candidate("email", None, None, None, "Asia/Vladivostok")
    assert decide(email, NOW, QUIET) == CLAIM


def test_terms_that_may_still_come_true_wait_and_false_ones_leave_the_chain() -> None:
    later = NOW + timedelta(days=3)
    assert decide(sms(terms_hold=False, wait_until=later), NOW, QUIET) == Decision(
        "defer", until=later
    )
    assert decide(sms(terms_hold=False, wait_until=NOW), NOW, QUIET) == Decision(
        "skip", reason=reasons.TERMS_FALSE
    )
    assert decide(sms(terms_hold=False), NOW, QUIET) == Decision("skip", reason=reasons.TERMS_FALSE)
    assert decide(sms(terms_hold=True, wait_until=later), NOW, QUIET) == CLAIM


def test_terms_come_before_contacts_and_contacts_before_quiet_hours() -> None:
    unsubscribed = sms("Asia/Vladivostok", contact_refusal=reasons.SMS_UNSUBSCRIBED)
    assert decide(unsubscribed, NOW, QUIET) == Decision("skip", reason=reasons.SMS_UNSUBSCRIBED)
    both = sms(terms_hold=False, contact_refusal=reasons.SMS_UNSUBSCRIBED)
    assert decide(both, NOW, QUIET) == Decision("skip", reason=reasons.TERMS_FALSE)


def test_a_customer_at_the_frequency_cap_is_skipped_once_the_message_may_go() -> None:
    assert decide(sms(cap_limit=1, counted_by_cap=0), NOW, QUIET) == CLAIM
    assert decide(sms(cap_limit=1, counted_by_cap=1), NOW, QUIET) == Decision(
        "skip", reason=reasons.FREQUENCY_CAP
    )
    assert decide(sms(cap_limit=3, counted_by_cap=2), NOW, QUIET) == CLAIM
    assert decide(sms(counted_by_cap=5), NOW, QUIET) == CLAIM  # no cap
    # A message that waits for the end of quiet hours is counted then, not now.
    waiting = decide(sms("Asia/Vladivostok", cap_limit=1, counted_by_cap=1), NOW, QUIET)
    assert waiting.action == "defer"
    # The other reasons come first: they say more about the customer.
    unsubscribed = sms(contact_refusal=reasons.SMS_UNSUBSCRIBED, cap_limit=1, counted_by_cap=1)
    assert decide(unsubscribed, NOW, QUIET).reason == reasons.SMS_UNSUBSCRIBED


@given(
    zone=st.sampled_from(ZONES),
    now=st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
    ),
    terms=st.sampled_from([None, True, False]),
    wait=st.one_of(
        st.none(), st.timedeltas(min_value=-timedelta(days=40), max_value=timedelta(days=40))
    ),
    refusal=st.sampled_from([None, reasons.NO_PHONE, reasons.SMS_UNSUBSCRIBED]),
    cap=st.one_of(st.none(), st.integers(min_value=1, max_value=5)),
    counted=st.integers(min_value=0, max_value=6),
)
def test_every_decision_follows_the_rules(
    zone: str,
    now: datetime,
    terms: bool | None,
    wait: timedelta | None,
    refusal: str | None,
    cap: int | None,
    counted: int,
) -> None:
    wait_until = None if wait is None else now + wait
    candidate = sms(
        zone,
        terms_hold=terms,
        wait_until=wait_until,
        contact_refusal=refusal,
        cap_limit=cap,
        counted_by_cap=counted,
    )
    decision = decide(candidate, now, QUIET)
    over_cap = cap is not None and counted >= cap
    if decision.action == "claim":
        assert terms is not False
        assert refusal is None
        assert not in_quiet_hours(now.astimezone(ZoneInfo(zone)).time(), QUIET)
        assert not over_cap
    elif decision.action == "skip":
        assert decision.reason in {reasons.TERMS_FALSE, refusal, reasons.FREQUENCY_CAP}
        if decision.reason == reasons.TERMS_FALSE:
            assert terms is False
            assert wait_until is None or wait_until <= now
        if decision.reason == reasons.FREQUENCY_CAP:
            assert over_cap
            assert not in_quiet_hours(now.astimezone(ZoneInfo(zone)).time(), QUIET)
    else:
        # A deferral always moves the row later, never earlier: it is not re-scanned
        # until then, and it is never sent before it may be.
        assert decision.until is not None
        assert decision.until > now
        if terms is not False:
            local = decision.until.astimezone(ZoneInfo(zone)).time()
            assert not in_quiet_hours(local, QUIET)
