"""Hostile templates (issue 11, item 2): refused when saved where the template alone
shows it, stopped while rendering otherwise, in words, quickly, and never holding up
anything else; `{{ first_name }}` templates unchanged."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from channels.email_compose import EmailComposer, EmailStep, Recipient
from channels.rendering import RenderError
from channels.sms import OutboxSmsTransport
from channels.smtp import OutboxEmailTransport
from models.db import Database
from models.preview import PreviewCustomer
from models.templates import RENDERED_LIMITS, compile_problems
from services.preview import MessageSetup, StepMessage, render_preview
from telegram_double import TelegramDouble
from tests.test_bot_preview import editor
from tests.test_sms_gateway import render_sms

NESTED_LOOPS = "{% for x in range(100000) %}{% for y in range(100000) %}{% endfor %}{% endfor %}"
# The same with the bounds from the customer's data: nothing to see when saving.
NESTED_LOOPS_FROM_DATA = "{% for x in range(n) %}{% for y in range(n) %}{% endfor %}{% endfor %}"
CONTEXT = {"first_name": "Анна", "n": 100_000, "s": "x" * 100_000, "width": 10**8}
LOOPS = "the template loops or calls more than 100,000 times"
VALUE = "an expression would make a value longer than 1,000,000 characters or items"


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        (
            NESTED_LOOPS,
            "line 1: loops nested over range() would go round 10,000,000,000 times: "
            "at most 100,000",
        ),
        ("{{ 'a' * 10**8 }}", f"line 1: {VALUE}"),
        ("{{ [1, 2] * 10**7 }}", f"line 1: {VALUE}"),
        (
            "{{ 7 ** 100000 }}",
            "line 1: an expression would make a number of more than 1,234 digits",
        ),
        (
            "{% for i in range(10**6) %}{% endfor %}",
            "line 1: range() of 1,000,000 numbers: at most 100,000",
        ),
        (
            "{% for a in range(1000) %}\n{% for b in range(1000) %}{% endfor %}{% endfor %}",
            "line 2: loops nested over range() would go round 1,000,000 times: at most 100,000",
        ),
        (
            "{{ 'a'|center(10**8) }}",
            "line 1: a width or count of 100,000,000 is larger than 1,000,000",
        ),
        (
            "{{ 'a'.ljust(10**8) }}",
            "line 1: a width or count of 100,000,000 is larger than 1,000,000",
        ),
        ("{{ ((((((((((((((((((((1)))))))))))))))))))) }}", None),
        ("{% for a in range(300) %}{% for b in range(300) %}{% endfor %}{% endfor %}", None),
        ("Hi {{ first_name }}, {{ 'ab' * 3 }} {{ 2 ** 10 }}", None),
    ],
)
def test_what_the_template_alone_shows_is_refused_when_saved(
    source: str, problem: str | None
) -> None:
    assert compile_problems(source) == problem


@pytest.mark.parametrize(
    ("source", "error"),
    [
        (NESTED_LOOPS, LOOPS),
        (NESTED_LOOPS_FROM_DATA, LOOPS),
        ("{% for i in s %}{% for j in s %}{% endfor %}{% endfor %}", LOOPS),
        ("{% for i in range(n) %}{{ range(n)|sum }}{% endfor %}", LOOPS),
        (
            "{% macro f(k) %}{% if k %}{{ f(k - 1) }}{{ f(k - 1) }}{% endif %}{% endmacro %}"
            "{{ f(40) }}",
            None,  # a budget of steps or of time, whichever is spent first
        ),
        ("{{ 'a' * 10**8 }}", VALUE),
        ("{{ s * n }}", VALUE),
        ("{{ 10 ** n }}", "an expression would make a number of more than 1,234 digits"),
        ("{{ 'a'|center(width) }}", "a width or count of 100,000,000 is larger than 1,000,000"),
        ("{{ 'a'.rjust(width) }}", "a width or count of 100,000,000 is larger than 1,000,000"),
        (
            "{{ '%100000000s'|format(1) }}",
            "a format asks for a width or precision of seven digits or more",
        ),
        (
            "{{ '%100000000s' % 1 }}",
            "a format asks for a width or precision of seven digits or more",
        ),
        (
            "{{ '{:>100000000}'.format(1) }}",
            "a format asks for a width or precision of seven digits or more",
        ),
        ("{{ s|replace('', s) }}", VALUE),
        (
            "{% set ns = namespace(t='ab') %}{% for i in range(40) %}"
            "{% set ns.t = ns.t ~ ns.t %}{% endfor %}",
            VALUE,
        ),
        ("{{ range(1)|slice(10**6)|list }}", "a width or count of 1,000,000 is larger than 10,000"),
        ("{{ lipsum(10**6) }}", "a width or count of 1,000,000 is larger than 1,000"),
        ("{{ s ~ s }}", "the rendered text is longer than 2,000 characters"),
    ],
)
def test_a_template_beyond_a_limit_is_stopped_quickly_in_words(
    source: str, error: str | None
) -> None:
    started = time.perf_counter()
    with pytest.raises(RenderError) as failed:
        render_sms(source, CONTEXT)
    assert time.perf_counter() - started < 0.5
    message = str(failed.value)
    assert message.startswith("SMS text: ")
    if error is None:
        assert message in (
            f"SMS text: {LOOPS}",
            "SMS text: the template took longer than 0.1 s to render",
        )
    else:
        assert message == f"SMS text: {error}"


def email_step(**parts: str) -> EmailStep:
    return EmailStep(
        chain_id=1,
        chain_name="c",
        step_id=1,
        position=1,
        campaign="c",
        utm=True,
        subject=parts.get("subject", "Hi {{ first_name }}"),
        text=parts.get("text", "Hello {{ first_name }}"),
        html=parts.get("html"),
        mail_from="Shop <news@shop.example>",
    )


@pytest.mark.parametrize(
    ("part", "name"), [("subject", "subject"), ("text", "text"), ("html", "HTML")]
)
def test_each_email_part_has_its_own_cap_once_rendered(part: str, name: str) -> None:
    limit = RENDERED_LIMITS[part]
    composer = EmailComposer(
        email_step(**{part: "{{ 'x' * size }}{{ 'y' * size }}"}),
        public_base_url="https://t",
        secret_key="k",
        installation_id="i1",
    )
    recipient = Recipient(1, 1, "a@example.com", {"size": limit // 2})
    assert composer.compose(recipient).data
    with pytest.raises(RenderError) as failed:
        composer.compose(Recipient(1, 1, "a@example.com", {"size": limit // 2 + 1}))
    assert str(failed.value) == f"{name}: the rendered text is longer than {limit:,} characters"


def test_first_name_templates_render_as_before() -> None:
    composer = EmailComposer(
        email_step(html="<p>{{ first_name }}</p>"),
        public_base_url="https://t",
        secret_key="k",
        installation_id="i1",
    )
    composed = composer.compose(Recipient(1, 1, "a@example.com", {"first_name": "<Анна>"}))
    assert b"Message-ID: <cm.i1.1.1@shop.example>" in composed.data
    assert render_sms("  {{ first_name }}, hi  ", {"first_name": None}) == ", hi"
    assert render_sms("{% for c in 'abc' %}{{ c }}.{% endfor %}", {}) == "a.b.c."
    assert render_sms("{{ range(3)|list }} {{ range(5)|length }} {{ range(9)[2] }}", {}) == (
        "[0, 1, 2] 5 2"
    )


async def test_a_preview_that_cannot_finish_holds_up_nothing_else(tmp_path: Path) -> None:
    setup = MessageSetup(
        mail_from="Shop <news@shop.example>",
        public_base_url="https://t.shop.example",
        secret_key="k",
        open_email=lambda: OutboxEmailTransport(tmp_path),
        open_sms=lambda: OutboxSmsTransport(tmp_path / "sms.jsonl"),
    )
    message = StepMessage(
        1, "c", 1, 1, "c", True, {"channel": "sms", "text": NESTED_LOOPS_FROM_DATA}
    )
    customer = PreviewCustomer(0, "x", "Анна", None, None, CONTEXT, made_up=True)
    gaps: list[float] = []

    async def heartbeat() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    beating = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.02)
    with pytest.raises(RenderError, match=LOOPS):
        await render_preview(Database("sqlite+aiosqlite://"), setup, message, customer)
    beating.cancel()
    assert max(gaps) < 0.1


async def test_the_bot_preview_says_a_template_was_stopped(
    db: Database, double: TelegramDouble, tmp_path: Path
) -> None:
    async with editor(db, double, tmp_path) as phone:
        await phone.tap("✉️ Message")
        await phone.tap("✏️ Text")
        await phone.send(
            "{% for x in range(99999) %}{% for y in range(99999) %}{% endfor %}{% endfor %}"
        )
        started = time.perf_counter()
        await phone.tap("👁 Preview")
        assert time.perf_counter() - started < 5
        assert "The message cannot be built for this customer" in phone.text
        assert f"text: {LOOPS}" in phone.text
