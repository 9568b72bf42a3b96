"""The rules behind the editor's dead ends (issue 14, item 3), pure and by the hundred:
strict amounts, terms by channel, the costliest SMS rendering, template errors and
unknown placeholders in plain words."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.amounts import MAX_AMOUNT, AmountProblem, NotAnAmount, parse_amount
from models.chainfile import (
    EMAIL_ONLY_TERMS,
    Match,
    Send,
    Term,
    TermsAudience,
    later_only_terms,
    send_now_refusal,
    terms_for_channel,
)
from models.sms_parts import GSM7_BASIC, SmsFrame, costliest, sms_as_sent, sms_parts
from models.templates import (
    CUSTOMER_FIELDS,
    TEXT_ENV,
    template_problems,
    unknown_placeholders,
)

# --- Amounts --------------------------------------------------------------------------


@given(st.decimals(min_value=0, max_value=MAX_AMOUNT, places=2, allow_nan=False))
def test_an_amount_written_plainly_reads_back_as_itself(amount: Decimal) -> None:
    whole, _, cents = f"{amount:.2f}".partition(".")
    grouped = f"{int(whole):,}".replace(",", " ")
    for typed in (f"{whole}.{cents}", f"{whole},{cents}", f"{grouped},{cents}", whole):
        expected = amount if typed != whole else Decimal(whole)
        assert parse_amount(typed) == expected


@pytest.mark.parametrize(
    "typed",
    ["1e9", "1E3", "inf", "Infinity", "nan", "-5", "+5", "", " ", "1,500", "1.234", "15ОО",
     "1 50", "12 3456", "1..5", "0x10", "١٢٣", "1_000"],
)  # fmt: skip
def test_what_is_not_plainly_an_amount_is_refused(typed: str) -> None:
    with pytest.raises(NotAnAmount) as refused:
        parse_amount(typed)
    assert refused.value.problem is AmountProblem.NOT_DIGITS


@given(st.text(max_size=20))
def test_any_text_is_an_amount_within_bounds_or_refused(typed: str) -> None:
    try:
        amount = parse_amount(typed)
    except NotAnAmount:
        return
    assert amount.is_finite()
    assert 0 <= amount <= MAX_AMOUNT
    assert amount == amount.quantize(Decimal("0.01"))


def test_an_amount_above_the_maximum_is_refused_as_too_big() -> None:
    with pytest.raises(NotAnAmount) as refused:
        parse_amount("100 000 000,01")
    assert refused.value.problem is AmountProblem.TOO_BIG
    assert parse_amount("100 000 000") == MAX_AMOUNT


# --- Terms by channel -----------------------------------------------------------------------


def test_after_an_sms_only_terms_an_sms_can_tell_are_offered() -> None:
    after_sms = terms_for_channel("sms")
    assert not set(after_sms) & EMAIL_ONLY_TERMS
    assert Term.UNSUBSCRIBED_EMAIL not in after_sms
    assert {Term.DELIVERED, Term.NOT_DELIVERED, Term.CLICKED, Term.NOT_CLICKED} <= set(after_sms)
    assert {Term.UNSUBSCRIBED_SMS, Term.ORDERED, Term.NOT_ORDERED} <= set(after_sms)
    assert terms_for_channel("email") == tuple(Term) == terms_for_channel(None)


@given(st.lists(st.sampled_from(list(Term)), min_size=1, unique=True), st.sampled_from(Match))
def test_later_only_terms_are_exactly_what_send_now_refuses(
    terms: list[Term], match: Match
) -> None:
    audience = TermsAudience(match, tuple(terms))
    later = later_only_terms(audience)
    refusal = send_now_refusal(audience, Send.NOW)
    assert bool(later) == bool(refusal)
    assert all(term.value.startswith("not_") for term in later)


# --- The costliest SMS rendering -------------------------------------------------------------

gsm_text = st.text(alphabet=sorted(GSM7_BASIC - {"\r"}), max_size=200)


@given(gsm_text, st.lists(st.text(max_size=40), max_size=8))
def test_the_count_is_the_costliest_of_the_renderings(text: str, names: list[str]) -> None:
    frame = SmsFrame()
    renderings = [(name, sms_as_sent(text + name, frame), {"first_name": name}) for name in names]
    counted = costliest(sms_as_sent(text, frame), renderings, ["first_name"])
    assert counted.sampled == len(names)
    if names:
        worst = max(sms_parts(sent).parts for _, sent, _ in renderings)
        assert counted.longest.parts == worst
        assert counted.whose in names
    else:
        assert counted.longest == sms_parts(text)
    switching = any(sms_parts(sent).encoding == "UCS-2" for _, sent, _ in renderings)
    assert counted.switched == switching
    assert counted.switching == (("first_name",) if switching else ())


def test_a_cyrillic_name_switches_one_gsm_part_into_two_ucs2_parts() -> None:
    frame = SmsFrame()
    text = "Hi {{ first_name }}! " + "x" * 100
    renderings = [
        (name, sms_as_sent(text.replace("{{ first_name }}", name), frame), {"first_name": name})
        for name in ("Ann", "Анна")
    ]
    counted = costliest(sms_as_sent(text, frame), renderings, ["first_name"])
    assert (counted.template.parts, counted.template.encoding) == (1, "GSM-7")
    assert (counted.longest.parts, counted.longest.encoding, counted.whose) == (2, "UCS-2", "Анна")
    assert counted.switched
    assert counted.switching == ("first_name",)


# --- Templates in plain words ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("Hi {{ first_name ", "line 1: a placeholder is not closed: write {{ first_name }}"),
        ("Hi\n{{ first_name }", "line 2: a placeholder is not closed: write {{ first_name }}"),
        (
            "{{ Black Friday }}",
            "line 1: «{{ Black Friday }}» is not a placeholder: between the braces goes one "
            "name without spaces, like {{ first_name }}",
        ),
        ("a\n{% if city %}\nb", "line 2: «{% if %}» is not closed: end it with {% endif %}"),
        ("{% endif %}", "line 1: «{% endif %}» has no «{% if … %}» before it"),
        ("{{ name|uper }}", "line 1: there is no filter «uper»: did you mean «upper»?"),
        ("{{ }}", "line 1: «{{ }}» is empty: put a name in it, like {{ first_name }}"),
        ("{% if x ", "line 1: a tag opened with {% is not closed with %}"),
        ("{# note", "line 1: a comment opened with {# is not closed with #}"),
    ],
)
def test_jinjas_common_syntax_errors_read_as_plain_sentences(source: str, problem: str) -> None:
    assert template_problems(source)[0] == problem


@given(st.text(alphabet="{}%#| ab\n()'\"=", max_size=40))
def test_every_template_problem_names_its_line_and_never_fails(source: str) -> None:
    problem, _ = template_problems(source)
    try:
        TEXT_ENV.parse(source)
    except Exception:
        assert problem is not None
        assert problem.startswith("line ")
        line = int(problem.split(":")[0].removeprefix("line "))
        assert 1 <= line <= source.count("\n") + 1
        assert "expected token" not in problem


def test_unknown_placeholders_say_their_line_and_the_name_meant() -> None:
    found = unknown_placeholders(
        "Hi {{ First_Name }}\n{{ citi }} {{ Friday }}", CUSTOMER_FIELDS | {"city"}
    )
    assert [(f.name, f.line, f.suggestion) for f in found] == [
        ("First_Name", 1, "first_name"),
        ("Friday", 2, None),
        ("citi", 2, "city"),
    ]
    assert unknown_placeholders("Hi {{ first_name }} {{ city }}", CUSTOMER_FIELDS | {"city"}) == []
    # Names the template declares itself are not the customer's.
    assert unknown_placeholders("{% for x in items %}{{ x }}{% endfor %}", {"items"}) == []
