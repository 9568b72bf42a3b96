"""Reading what comes back (inbound/parse.py): pure, on messages as real servers write them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels.email_compose import ComposedEmail, EmailComposer, Recipient
from inbound.parse import ReturnPaths, read_returned
from models.inbound import Finding, Kind
from models.tokens import (
    ReturnKind,
    read_return_local_part,
    return_local_part,
)
from tests.returned_mail import (
    arf_report,
    exim_bounce,
    out_of_office,
    postfix_dsn,
    unsubscribe_request,
)
from tests.test_email_compose import make_step

SECRET = "inbound-secret"
BASE = "https://mail.shop.example"
DOMAIN = "bounce.shop.example"
PATHS = ReturnPaths(SECRET, DOMAIN, BASE)
DELIVERY = 4711


def composed(*, bounce_domain: str | None = DOMAIN, secret: str = SECRET) -> ComposedEmail:
    composer = EmailComposer(
        make_step(),
        public_base_url=BASE,
        secret_key=secret,
        installation_id="0123456789ab",
        bounce_domain=bounce_domain,
    )
    return composer.compose(Recipient(DELIVERY, 45, "ivan@example.com", {}))


def original(*, bounce_domain: str | None = DOMAIN, secret: str = SECRET) -> bytes:
    return composed(bounce_domain=bounce_domain, secret=secret).data


def bounce_address(delivery_id: int = DELIVERY, secret: str = SECRET) -> str:
    return f"{return_local_part(secret, ReturnKind.BOUNCE, delivery_id)}@{DOMAIN}"


def unsubscribe_address(delivery_id: int = DELIVERY) -> str:
    return f"{return_local_part(SECRET, ReturnKind.UNSUBSCRIBE, delivery_id)}@{DOMAIN}"


@given(st.integers(min_value=1, max_value=2**62), st.sampled_from(list(ReturnKind)))
def test_a_return_address_names_its_delivery_in_any_case(
    delivery_id: int, kind: ReturnKind
) -> None:
    local = return_local_part(SECRET, kind, delivery_id)
    for spelling in (local, local.upper(), local.title()):
        read = read_return_local_part(SECRET, spelling)
        assert read is not None
        assert (read.kind, read.delivery_id) == (kind, delivery_id)
    assert read_return_local_part("another installation's key", local) is None
    assert len(local) <= 2 + 13 + 1 + 16


def test_a_return_address_with_another_delivery_number_is_refused() -> None:
    local = return_local_part(SECRET, ReturnKind.BOUNCE, DELIVERY)
    signature = local.rpartition("-")[2]
    assert read_return_local_part(SECRET, f"b+3mp-{signature}") is None
    assert read_return_local_part(SECRET, local.replace("b+", "u+")) is None


def test_a_postfix_hard_bounce_to_the_verp_address_is_a_bounce_with_its_status() -> None:
    dsn = postfix_dsn(original(), to=bounce_address(), recipient="ivan@example.com")

    [finding] = read_returned(dsn, [bounce_address()], PATHS)

    assert finding.kind is Kind.BOUNCE
    assert finding.delivery_id == DELIVERY
    assert finding.status == "5.1.1"
    assert finding.recipient == "ivan@example.com"
    assert "User unknown" in finding.diagnostic


def test_a_delay_notice_is_only_a_delay() -> None:
    dsn = postfix_dsn(
        original(),
        to=bounce_address(),
        recipient="ivan@example.com",
        action="delayed",
        status="4.4.1",
        diagnostic="X-Postfix; connect to mail.example.com: Connection timed out",
    )

    [finding] = read_returned(dsn, [bounce_address()], PATHS)

    assert (finding.kind, finding.status) == (Kind.DELAY, "4.4.1")


def test_a_dsn_sent_to_the_shops_own_mailbox_is_matched_by_the_returned_headers() -> None:
    """No BOUNCE_DOMAIN: the bounce reaches MAIL_FROM's mailbox (read over IMAP); the
    List-Unsubscribe link among the original's headers names the delivery."""
    paths = ReturnPaths(SECRET, None, BASE)
    dsn = postfix_dsn(
        original(bounce_domain=None), to="news@shop.example", recipient="ivan@example.com"
    )

    [finding] = read_returned(dsn, ["news@shop.example"], paths)

    assert (finding.kind, finding.delivery_id) == (Kind.BOUNCE, DELIVERY)


def test_a_dsn_naming_only_a_message_id_changes_nothing() -> None:
    """Message-IDs can be guessed by anyone who got one of our emails."""
    headers = b"Message-ID: <cm.0123456789ab.7.46@shop.example>\r\nSubject: Hi\r\n\r\n"
    dsn = postfix_dsn(headers, to="postmaster@bounce.shop.example", recipient="olga@example.com")

    assert read_returned(dsn, ["postmaster@bounce.shop.example"], PATHS) == []


def test_a_forged_report_changes_nothing() -> None:
    """Addresses and links signed with any key but ours name no delivery."""
    forged = bounce_address(secret="guessed")
    dsn = postfix_dsn(original(secret="guessed"), to=forged, recipient="ivan@example.com")

    assert read_returned(dsn, [forged], PATHS) == []


def test_a_feedback_loop_complaint_to_the_fbl_address_names_the_delivery() -> None:
    report = arf_report(original(), to=f"fbl@{DOMAIN}")

    [finding] = read_returned(report, [f"fbl@{DOMAIN}"], PATHS)

    assert (finding.kind, finding.delivery_id) == (Kind.COMPLAINT, DELIVERY)


@pytest.mark.parametrize("feedback_type", ["not-spam", "auth-failure", "virus"])
def test_feedback_reports_that_are_not_complaints_change_nothing(feedback_type: str) -> None:
    report = arf_report(original(), to=f"fbl@{DOMAIN}", feedback_type=feedback_type)

    assert read_returned(report, [f"fbl@{DOMAIN}"], PATHS) == []


def test_mail_to_the_mailto_address_is_an_unsubscribe() -> None:
    [finding] = read_returned(
        unsubscribe_request(to=unsubscribe_address()), [unsubscribe_address()], PATHS
    )

    assert finding == Finding(Kind.UNSUBSCRIBE, DELIVERY)


def test_an_exim_bounce_without_dsn_parts_is_read_by_the_detectors() -> None:
    bounce = exim_bounce(to=bounce_address(), recipient="ivan@example.com")

    [finding] = read_returned(bounce, [bounce_address()], PATHS)

    assert (finding.kind, finding.delivery_id) == (Kind.BOUNCE, DELIVERY)
    assert (finding.recipient, finding.status) == ("ivan@example.com", "5.1.1")


def test_an_out_of_office_reply_to_the_return_path_is_nothing() -> None:
    assert read_returned(out_of_office(to=bounce_address()), [bounce_address()], PATHS) == []


def test_a_mailbox_copy_names_its_recipient_in_delivered_to() -> None:
    """Over IMAP the envelope is gone; Delivered-To keeps the VERP address."""
    dsn = postfix_dsn(original(), to="bounces@shop.example", recipient="ivan@example.com")
    stored = f"Delivered-To: {bounce_address()}\r\n".encode() + dsn

    [finding] = read_returned(stored, None, PATHS)

    assert (finding.kind, finding.delivery_id) == (Kind.BOUNCE, DELIVERY)


@given(st.binary(max_size=2000))
def test_any_bytes_at_all_read_without_an_error(data: bytes) -> None:
    assert all(f.delivery_id for f in read_returned(data, [bounce_address()], PATHS))


def test_the_composed_message_carries_the_verp_addresses() -> None:
    message = composed()

    assert message.envelope_sender == bounce_address()
    assert f"<mailto:{unsubscribe_address()}?subject=unsubscribe>" in message.data.decode()
