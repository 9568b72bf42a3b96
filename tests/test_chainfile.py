"""Chain documents: every problem found with its path, warnings apart, a canonical form."""

from __future__ import annotations

import copy
import re
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jinja2.exceptions import SecurityError

from models.chainfile import (
    BlockKind,
    ChainSpec,
    Conversion,
    EmailAction,
    InvalidChainFile,
    Match,
    Mechanic,
    PreviousStepAudience,
    Schedule,
    SegmentsAudience,
    Send,
    SmsAction,
    Term,
    TermsAudience,
    default_campaign,
    dump_yaml,
    format_duration,
    format_moment,
    load_yaml,
    parse_duration,
    parse_moment,
    validate_action,
    validate_audience,
    validate_block,
    validate_chain,
    validate_conversion,
    validate_name,
    validate_schedule,
)
from models.templates import (
    HTML_ENV,
    TEXT_ENV,
    compile_problems,
    template_context,
    template_variables,
)

SEGMENTS = {"new-customers", "vip"}
ATTRIBUTES = {"city"}
TERMS = (
    "opened, not_opened, clicked, not_clicked, delivered, not_delivered, "
    "unsubscribed_email, unsubscribed_sms, ordered, not_ordered"
)
BASE: dict[str, Any] = {
    "format": "chainmail/1",
    "name": "Welcome series",
    "steps": [
        {
            "name": "Welcome",
            "audience": {"segments": ["new-customers"]},
            "action": {
                "channel": "email",
                "subject": "Hi {{ first_name }}",
                "text": "Hello from {{ city }}",
                "html": "<p>Hello</p>",
            },
            "schedule": {"send": "now"},
        },
        {
            "name": "Reminder",
            "audience": {"who": "terms", "match": "any", "terms": ["not_opened"]},
            "action": {"channel": "email", "subject": "Still there?", "text": "…"},
            "schedule": {"send": "after", "after": "2d"},
        },
        {
            "name": "Text them",
            "audience": {"who": "all"},
            "action": {"channel": "sms", "text": "Привет, {{ first_name }}"},
            "schedule": {"send": "at", "at": "2026-12-01 10:00"},
        },
    ],
}
DELETE = object()


def changed(*edits: tuple[str, Any]) -> dict[str, Any]:
    """BASE with values set (or DELETE'd) at paths like `steps[1].schedule.after`."""
    doc = copy.deepcopy(BASE)
    for path, value in edits:
        *parents, last = [int(k) if k.isdigit() else k for k in re.findall(r"[^.\[\]]+", path)]
        target = doc
        for key in parents:
            target = target[key]
        if value is DELETE:
            del target[last]
        else:
            target[last] = value
    return doc


def problems(doc: Any) -> list[str]:
    checked = validate_chain(doc, known_segments=SEGMENTS, known_attributes=ATTRIBUTES)
    return [str(problem) for problem in checked.problems]


def warnings(doc: Any) -> list[str]:
    checked = validate_chain(doc, known_segments=SEGMENTS, known_attributes=ATTRIBUTES)
    return [str(warning) for warning in checked.warnings]


def test_the_base_document_is_valid() -> None:
    checked = validate_chain(BASE, known_segments=SEGMENTS, known_attributes=ATTRIBUTES)
    assert checked.problems == []
    assert checked.warnings == []
    assert checked.value is not None


# --- What is refused ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        # The document
        (("format", DELETE), ["format: missing"]),
        (
            ("format", "chainmail/2"),
            [
                "format: 'chainmail/2' is not a chain file format this version reads: "
                "write format: chainmail/1"
            ],
        ),
        (("colour", "red"), ["colour: unknown key"]),
        (("name", DELETE), ["name: missing"]),
        (("name", 42), ["name: must be text"]),
        (("name", "  "), ["name: must not be empty"]),
        (("name", "two\nlines"), ["name: must be one line"]),
        (("name", "x" * 201), ["name: must be at most 200 characters"]),
        (("enrollment", "sometimes"), ["enrollment: 'sometimes' is not one of: once, continuous"]),
        (("campaign", "весна"), ["campaign: 'весна' must be Latin letters, digits and _ only"]),
        (
            ("campaign", "spring sale"),
            ["campaign: 'spring sale' must be Latin letters, digits and _ only"],
        ),
        (("utm", "yes"), ["utm: must be true or false"]),
        (
            ("holdout_percent", 51),
            ["holdout_percent: 51 is not a whole number of percent from 0 to 50"],
        ),
        (
            ("holdout_percent", -1),
            ["holdout_percent: -1 is not a whole number of percent from 0 to 50"],
        ),
        (
            ("holdout_percent", 12.5),
            ["holdout_percent: 12.5 is not a whole number of percent from 0 to 50"],
        ),
        (
            ("holdout_percent", True),
            ["holdout_percent: true is not a whole number of percent from 0 to 50"],
        ),
        (
            ("holdout_percent", "10%"),
            ["holdout_percent: '10%' is not a whole number of percent from 0 to 50"],
        ),
        (("steps", DELETE), ["steps: missing"]),
        (("steps", []), ["steps: must list at least one step"]),
        (("steps", {"name": "x"}), ["steps: must be a list"]),
        # A step
        (("steps[1]", "Reminder"), ["steps[1]: must be a mapping"]),
        (("steps[1].name", DELETE), ["steps[1].name: missing"]),
        (("steps[1].when", "soon"), ["steps[1].when: unknown key"]),
        (("steps[1].audience", DELETE), ["steps[1].audience: missing"]),
        (("steps[1].action", DELETE), ["steps[1].action: missing"]),
        (("steps[1].schedule", DELETE), ["steps[1].schedule: missing"]),
        (("steps[1].schedule", "now"), ["steps[1].schedule: must be a mapping"]),
        # The main step's audience
        (
            ("steps[0].audience", {"who": "terms", "match": "any", "terms": ["opened"]}),
            [
                "steps[0].audience.who: the main step goes to segments "
                "({segments: [name, …]}); who: is for later steps",
                "steps[0].audience.match: the main step goes to segments "
                "({segments: [name, …]}); who: is for later steps",
                "steps[0].audience.terms: the main step goes to segments "
                "({segments: [name, …]}); who: is for later steps",
                "steps[0].audience.segments: missing",
            ],
        ),
        (("steps[0].audience", {}), ["steps[0].audience.segments: missing"]),
        (
            ("steps[0].audience.segments", []),
            ["steps[0].audience.segments: must list at least one segment"],
        ),
        (("steps[0].audience.segments", "vip"), ["steps[0].audience.segments: must be a list"]),
        (
            ("steps[0].audience.segments", ["vip", "nobody"]),
            ["steps[0].audience.segments[1]: 'nobody' is not a known segment"],
        ),
        (
            ("steps[0].audience.segments", ["vip", "vip"]),
            ["steps[0].audience.segments[1]: 'vip' is listed twice"],
        ),
        (("steps[0].audience.segments", [7]), ["steps[0].audience.segments[0]: must be text"]),
        # A later step's audience
        (
            ("steps[2].audience.who", "previous"),
            ["steps[2].audience.who: 'previous' is not one of: all, terms"],
        ),
        (("steps[2].audience.who", DELETE), ["steps[2].audience.who: missing"]),
        (
            ("steps[2].audience.segments", ["vip"]),
            [
                "steps[2].audience.segments: only the main step goes to segments; "
                "later steps use who: all or who: terms"
            ],
        ),
        (
            ("steps[2].audience.terms", ["opened"]),
            ["steps[2].audience.terms: only goes with who: terms"],
        ),
        (("steps[1].audience.terms", []), ["steps[1].audience.terms: must list at least one term"]),
        (("steps[1].audience.terms", DELETE), ["steps[1].audience.terms: missing"]),
        (
            ("steps[1].audience.terms", ["opened", "opnd"]),
            [f"steps[1].audience.terms[1]: 'opnd' is not a term; terms are: {TERMS}"],
        ),
        (
            ("steps[1].audience.terms", ["opened", "opened"]),
            ["steps[1].audience.terms[1]: 'opened' is listed twice"],
        ),
        (
            ("steps[1].audience.match", "some"),
            ["steps[1].audience.match: 'some' is not one of: any, all"],
        ),
        (("steps[1].audience.subjet", "x"), ["steps[1].audience.subjet: unknown key"]),
        # Terms only known later need a moment to be checked at
        (
            ("steps[1].schedule", {"send": "now"}),
            [
                "steps[1].schedule.send: send: now cannot wait for not_opened: known only later; "
                "use send: after or send: at"
            ],
        ),
        # The action
        (
            ("steps[0].action.channel", "fax"),
            ["steps[0].action.channel: 'fax' is not one of: email, sms"],
        ),
        (("steps[0].action.channel", DELETE), ["steps[0].action.channel: missing"]),
        (("steps[0].action.subject", DELETE), ["steps[0].action.subject: missing"]),
        (("steps[0].action.text", DELETE), ["steps[0].action.text: missing"]),
        (("steps[0].action.subject", "Hi\nthere"), ["steps[0].action.subject: must be one line"]),
        (("steps[0].action.html", ""), ["steps[0].action.html: must not be empty"]),
        (
            ("steps[0].action.text", "Hi {{ first_name }"),
            [
                "steps[0].action.text: not a valid template: line 1: a placeholder is not "
                "closed: write {{ first_name }}"
            ],
        ),
        (
            ("steps[0].action.html", "<p>\n{% if city %}</p>"),
            [
                "steps[0].action.html: not a valid template: line 2: «{% if %}» is not "
                "closed: end it with {% endif %}"
            ],
        ),
        (
            ("steps[0].action.text", "{% include 'footer' %}"),
            [
                "steps[0].action.text: not a valid template: a message template cannot "
                "include, import or extend other templates"
            ],
        ),
        (
            ("steps[2].action.subject", "Hi"),
            ["steps[2].action.subject: only an email has this; an sms has only text"],
        ),
        (
            ("steps[2].action.text", "я" * 671),
            ["steps[2].action.text: 11 SMS parts (671 UCS-2 characters as written): at most 10"],
        ),
        # The schedule
        (("steps[1].schedule.send", DELETE), ["steps[1].schedule.send: missing"]),
        (
            ("steps[1].schedule.send", "later"),
            ["steps[1].schedule.send: 'later' is not one of: now, after, at"],
        ),
        (("steps[1].schedule.after", "2x"), ["steps[1].schedule.after: '2x' is not a duration"]),
        (("steps[1].schedule.after", 5), ["steps[1].schedule.after: 5 is not a duration"]),
        (("steps[1].schedule.after", "0d"), ["steps[1].schedule.after: '0d' is not a duration"]),
        (
            ("steps[1].schedule.after", "3651d"),
            ["steps[1].schedule.after: '3651d' is longer than 3650 days"],
        ),
        (
            ("steps[1].schedule.wait_days", 3651),
            ["steps[1].schedule.wait_days: 3651 is not a whole number of days from 1 to 3650"],
        ),
        (("steps[1].schedule.after", DELETE), ["steps[1].schedule.after: missing"]),
        (
            ("steps[1].schedule.at", "2026-12-01 10:00"),
            ["steps[1].schedule.at: only goes with send: at"],
        ),
        (
            ("steps[2].schedule.after", "1h"),
            ["steps[2].schedule.after: only goes with send: after"],
        ),
        (("steps[2].schedule.at", DELETE), ["steps[2].schedule.at: missing"]),
        (
            ("steps[1].schedule.wait_days", 0),
            ["steps[1].schedule.wait_days: 0 is not a whole number of days from 1 to 3650"],
        ),
        (
            ("steps[1].schedule.wait_days", "30"),
            ["steps[1].schedule.wait_days: '30' is not a whole number of days from 1 to 3650"],
        ),
        (
            ("steps[1].schedule.wait_days", True),
            ["steps[1].schedule.wait_days: true is not a whole number of days from 1 to 3650"],
        ),
        (("steps[1].schedule.tz", "UTC"), ["steps[1].schedule.tz: unknown key"]),
        # The conversion
        (
            ("steps[0].conversion", {"goal": "click"}),
            ["steps[0].conversion.goal: 'click' is not one of: order"],
        ),
        (
            ("steps[0].conversion", {"window_days": 0}),
            ["steps[0].conversion.window_days: 0 is not a whole number of days from 1 to 3650"],
        ),
        (
            ("steps[0].conversion", {"min_amount": -1}),
            ["steps[0].conversion.min_amount: -1 is not an amount of 0 or more"],
        ),
        (
            ("steps[0].conversion", {"min_amount": "5"}),
            ["steps[0].conversion.min_amount: '5' is not an amount of 0 or more"],
        ),
        (("steps[0].conversion", {"window": 7}), ["steps[0].conversion.window: unknown key"]),
        (
            ("steps[0].conversion", {"mechanics": []}),
            ["steps[0].conversion.mechanics: must list at least one mechanic"],
        ),
        (
            ("steps[0].conversion", {"mechanics": "new_order"}),
            ["steps[0].conversion.mechanics: must be a list"],
        ),
        (
            ("steps[0].conversion", {"mechanics": ["new_order", "order_grown", "new_order"]}),
            [
                "steps[0].conversion.mechanics[2]: 'new_order' is listed twice",
                "steps[0].conversion.mechanics[1]: 'order_grown' is not a mechanic; mechanics"
                " are: new_order, order_increase, order_restored",
            ],
        ),
    ],
)
def test_refuses_with_path_and_reason(edit: tuple[str, Any], expected: list[str]) -> None:
    assert problems(changed(edit)) == expected


@pytest.mark.parametrize(
    "at",
    [
        "2026-12-01T10:00",
        "2026-12-01 10:00+03:00",
        "2026-12-01 10:00:00",
        "2026-02-30 10:00",
        "01.12.2026 10:00",
        "tomorrow 10:00",
    ],
)
def test_at_is_a_local_date_and_time_without_a_zone(at: str) -> None:
    assert problems(changed(("steps[2].schedule.at", at))) == [
        f"steps[2].schedule.at: {at!r} is not a date and time like 2026-12-01 10:00"
    ]


def test_a_yaml_timestamp_is_shown_as_written_when_refused() -> None:
    doc = changed(("steps[2].schedule.at", load_yaml("at: 2026-12-01 10:00:00")["at"]))
    assert problems(doc) == [
        "steps[2].schedule.at: 2026-12-01 10:00:00 is not a date and time like 2026-12-01 10:00"
    ]


def test_a_misspelt_key_is_unknown_and_the_real_one_missing() -> None:
    doc = changed(("steps[0].action.subject", DELETE), ("steps[0].action.subjet", "Hi"))
    assert problems(doc) == [
        "steps[0].action.subjet: unknown key",
        "steps[0].action.subject: missing",
    ]


def test_every_problem_is_listed_at_once() -> None:
    doc = changed(
        ("format", "chainmail/0"),
        ("steps[0].audience.segments", ["nobody"]),
        ("steps[1].schedule.after", "2x"),
        ("steps[2].action.text", "{{ oops"),
    )
    assert [line.split(":")[0] for line in problems(doc)] == [
        "format",
        "steps[0].audience.segments[0]",
        "steps[1].schedule.after",
        "steps[2].action.text",
    ]


@pytest.mark.parametrize("doc", [None, "just text", ["format", "chainmail/1"], 3])
def test_a_document_that_is_not_a_mapping_is_refused(doc: Any) -> None:
    assert problems(doc) == ["a chain file is a YAML mapping with format, name and steps"]


def test_later_only_terms_may_wait_for_a_delay_or_a_moment() -> None:
    for schedule in ({"send": "after", "after": "3h"}, {"send": "at", "at": "2026-12-01 10:00"}):
        assert problems(changed(("steps[1].schedule", schedule))) == []


def test_terms_that_can_come_true_any_time_may_be_sent_now() -> None:
    doc = changed(
        ("steps[1].audience.terms", ["unsubscribed_email", "opened"]),
        ("steps[1].schedule", {"send": "now", "wait_days": 30}),
    )
    assert problems(doc) == []


# --- What is warned about ---------------------------------------------------------------


def test_a_name_no_customer_has_is_a_warning_not_a_refusal() -> None:
    doc = changed(("steps[0].action.text", "{{ bonus }} for you in {{ city }}, {{ email }}"))
    assert problems(doc) == []
    assert warnings(doc) == [
        "steps[0].action.text: {{ bonus }} is neither a customer field nor an attribute "
        "any customer has: it will be empty"
    ]


def test_wait_days_without_terms_is_a_warning() -> None:
    doc = changed(("steps[2].schedule.wait_days", 10))
    assert problems(doc) == []
    assert warnings(doc) == [
        "steps[2].schedule.wait_days: has no effect: wait_days is only used with who: terms"
    ]


# --- The typed chain and its canonical document ----------------------------------------


def test_a_valid_document_becomes_typed_steps_with_defaults() -> None:
    spec = validate_chain(BASE, known_segments=SEGMENTS, known_attributes=ATTRIBUTES).value
    assert spec is not None
    assert spec.campaign == "welcome_series"
    assert spec.utm is True
    main, reminder, sms = spec.steps
    assert main.audience == SegmentsAudience(("new-customers",))
    assert main.action == EmailAction(
        "Hi {{ first_name }}", "Hello from {{ city }}", "<p>Hello</p>"
    )
    assert main.conversion == Conversion(window_days=7, min_amount=Decimal(0))
    assert reminder.audience == TermsAudience(Match.ANY, (Term.NOT_OPENED,))
    assert reminder.schedule == Schedule(Send.AFTER, after=timedelta(days=2), wait_days=30)
    assert sms.audience == PreviousStepAudience()
    assert sms.action == SmsAction("Привет, {{ first_name }}")
    assert sms.schedule.at == datetime(2026, 12, 1, 10, 0)


def test_the_canonical_document_makes_defaults_explicit_in_a_fixed_order() -> None:
    spec = validate_chain(BASE, known_segments=SEGMENTS, known_attributes=ATTRIBUTES).value
    assert spec is not None
    doc = spec.to_document()
    assert list(doc) == [
        "format",
        "name",
        "enrollment",
        "campaign",
        "utm",
        "holdout_percent",
        "steps",
    ]
    assert doc["enrollment"] == "once"
    assert doc["holdout_percent"] == 0
    assert doc["steps"][1] == {
        "name": "Reminder",
        "audience": {"who": "terms", "match": "any", "terms": ["not_opened"]},
        "action": {"channel": "email", "subject": "Still there?", "text": "…"},
        "schedule": {"send": "after", "after": "2d", "wait_days": 30},
        "conversion": {"goal": "order", "window_days": 7, "min_amount": 0},
    }
    # wait_days only where terms use it.
    assert doc["steps"][2]["schedule"] == {"send": "at", "at": "2026-12-01 10:00"}


def test_a_holdout_percent_is_read_and_written_back() -> None:
    spec = validate_chain(
        changed(("holdout_percent", 10)), known_segments=SEGMENTS, known_attributes=ATTRIBUTES
    ).value
    assert spec is not None
    assert spec.holdout_percent == 10
    assert spec.to_document()["holdout_percent"] == 10


def test_match_defaults_to_all() -> None:
    doc = changed(("steps[1].audience.match", DELETE))
    spec = validate_chain(doc, known_segments=SEGMENTS, known_attributes=ATTRIBUTES).value
    assert spec is not None
    assert spec.steps[1].audience == TermsAudience(Match.ALL, (Term.NOT_OPENED,))


def test_the_canonical_document_reads_back_to_itself() -> None:
    spec = validate_chain(BASE, known_segments=SEGMENTS, known_attributes=ATTRIBUTES).value
    assert spec is not None
    text = dump_yaml(spec.to_document())
    again = validate_chain(load_yaml(text), known_segments=SEGMENTS, known_attributes=ATTRIBUTES)
    assert isinstance(again.value, ChainSpec)
    assert dump_yaml(again.value.to_document()) == text


def test_yaml_is_readable_unicode_with_text_blocks() -> None:
    text = dump_yaml({"name": "Привет", "text": "line one\nline two\n", "terms": ["a", "b"]})
    assert text == "name: Привет\ntext: |\n  line one\n  line two\nterms: [a, b]\n"


def test_yaml_errors_name_the_line() -> None:
    with pytest.raises(InvalidChainFile) as refused:
        load_yaml("format: chainmail/1\nname: [unclosed\n")
    assert str(refused.value).startswith("not YAML: line 3, column 1:")


def test_a_key_given_twice_is_refused() -> None:
    with pytest.raises(InvalidChainFile) as refused:
        load_yaml("name: a\nname: b\n")
    assert str(refused.value) == "not YAML: line 2, column 1: key 'name' given twice"


# --- Blocks on their own, as the bot saves them -------------------------------------------


def test_block_problems_have_paths_relative_to_the_block() -> None:
    checked = validate_schedule({"send": "after", "after": "2x"}, audience=None)
    assert [str(p) for p in checked.problems] == ["after: '2x' is not a duration"]
    assert checked.value is None


def test_an_optional_text_given_as_null_is_left_out() -> None:
    email = {"channel": "email", "subject": "Hi", "text": "Hello", "html": None}
    assert validate_action(email, known_attributes=None).value == EmailAction("Hi", "Hello")


def test_a_block_validator_returns_the_typed_block() -> None:
    audience = validate_audience({"segments": ["vip"]}, position=1, known_segments=SEGMENTS)
    assert audience.value == SegmentsAudience(("vip",))
    action = validate_action({"channel": "sms", "text": "Hi"}, known_attributes=ATTRIBUTES)
    assert action.value == SmsAction("Hi")
    assert validate_conversion({}).value == Conversion()


def test_mechanics_read_in_any_order_and_written_in_one_only_when_not_the_default() -> None:
    block = {"mechanics": ["order_restored", "new_order", "order_increase"]}
    conversion = validate_conversion(block).value
    assert conversion == Conversion(mechanics=tuple(Mechanic))
    assert conversion.to_block()["mechanics"] == ["new_order", "order_increase", "order_restored"]
    assert validate_conversion(conversion.to_block()).value == conversion
    default = validate_conversion({"mechanics": ["new_order"]}).value
    assert default == Conversion()
    assert "mechanics" not in default.to_block()


def test_validate_block_dispatches_by_kind_and_position() -> None:
    later = validate_block(BlockKind.AUDIENCE, {"segments": ["vip"]}, position=2)
    assert [str(p) for p in later.problems] == [
        "segments: only the main step goes to segments; later steps use who: all or who: terms",
        "who: missing",
    ]
    schedule = validate_block(
        BlockKind.SCHEDULE,
        {"send": "now"},
        position=2,
        audience=TermsAudience(Match.ALL, (Term.NOT_CLICKED, Term.NOT_ORDERED)),
    )
    assert [str(p) for p in schedule.problems] == [
        "send: send: now cannot wait for not_clicked, not_ordered: known only later; "
        "use send: after or send: at"
    ]


def test_unknown_segments_are_only_checked_when_known_ones_are_given() -> None:
    data = {"segments": ["gone"]}
    assert validate_audience(data, position=1, known_segments=None).problems == []
    assert validate_audience(data, position=1, known_segments=SEGMENTS).problems != []


def test_names_are_one_line_of_text() -> None:
    assert validate_name("  Welcome  ").value == "  Welcome  "
    assert [str(p) for p in validate_name("").problems] == ["name: must not be empty"]


# --- Durations, moments, campaign tags ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        ("90s", timedelta(seconds=90)),
        ("45m", timedelta(minutes=45)),
        ("3h", timedelta(hours=3)),
        ("2d", timedelta(days=2)),
    ],
)
def test_parses_durations(text: str, delta: timedelta) -> None:
    assert parse_duration(text) == delta
    assert format_duration(delta) == text


@pytest.mark.parametrize(
    "text", ["", "2", "d", "2x", "0s", "-1h", "1.5h", "2 d", "2D", "1h30m", "٢d", "2d\n"]
)
def test_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_durations_are_written_in_the_largest_exact_unit() -> None:
    assert format_duration(parse_duration("48h")) == "2d"
    assert format_duration(parse_duration("120s")) == "2m"
    assert format_duration(parse_duration("25h")) == "25h"


@given(st.integers(min_value=1, max_value=3650 * 86400))
def test_formatting_a_duration_parses_back_to_it(seconds: int) -> None:
    delta = timedelta(seconds=seconds)
    assert parse_duration(format_duration(delta)) == delta


@given(st.integers(min_value=1, max_value=3650), st.sampled_from("smhd"))
def test_a_duration_in_its_canonical_form_is_stable(amount: int, unit: str) -> None:
    canonical = format_duration(parse_duration(f"{amount}{unit}"))
    assert format_duration(parse_duration(canonical)) == canonical


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 12, 31, 23, 59)).map(
        lambda d: d.replace(second=0, microsecond=0)
    )
)
def test_moments_round_trip(moment: datetime) -> None:
    assert parse_moment(format_moment(moment)) == moment


@pytest.mark.parametrize(
    ("name", "tag"),
    [
        ("Welcome series", "welcome_series"),
        ("Весенняя распродажа", "vesennyaya_rasprodazha"),
        ("Щедрый четверг: -50%!", "shchedryy_chetverg_50"),
        ("Жёлтый «Ёжик» и съезд", "zheltyy_ezhik_i_sezd"),
        ("Café crème 2025", "cafe_creme_2025"),
        ("🎉🎉", "chain"),
    ],
)
def test_the_default_campaign_tag_is_a_latin_transliteration(name: str, tag: str) -> None:
    assert default_campaign(name) == tag


@given(st.text(max_size=300))
def test_a_default_campaign_tag_is_always_a_valid_one(name: str) -> None:
    tag = default_campaign(name)
    assert re.fullmatch(r"[A-Za-z0-9_]{1,100}", tag)


# --- The template sandbox -----------------------------------------------------------------


def test_template_errors_name_the_line() -> None:
    assert compile_problems("Hi\n{{ first_name }") == (
        "line 2: a placeholder is not closed: write {{ first_name }}"
    )
    assert compile_problems("Hi {{ first_name | upper }}") is None


def test_template_variables_are_the_names_read_from_the_customer() -> None:
    source = "{{ first_name }} {% for item in basket %}{{ item.name }}{% endfor %}{{ range(2) }}"
    assert template_variables(source) == {"first_name", "basket"}


def test_a_customer_lacking_an_attribute_renders_empty_instead_of_failing() -> None:
    context = template_context({"first_name": None, "email": "a@example.com"}, {"city": "Омск"})
    rendered = TEXT_ENV.from_string("Hi {{ first_name }}{{ bonus.code }}, {{ city }}").render(
        context
    )
    assert rendered == "Hi , Омск"


def test_fields_win_over_attributes_of_the_same_name() -> None:
    context = template_context({"email": "real@example.com"}, {"email": "fake", "city": "Омск"})
    assert context["email"] == "real@example.com"
    assert context["city"] == "Омск"


def test_html_templates_escape_values_and_text_templates_do_not() -> None:
    context = {"first_name": "<b>Ann</b>"}
    assert HTML_ENV.from_string("{{ first_name }}").render(context) == "&lt;b&gt;Ann&lt;/b&gt;"
    assert TEXT_ENV.from_string("{{ first_name }}").render(context) == "<b>Ann</b>"


def test_templates_cannot_reach_outside_the_sandbox_or_change_data() -> None:
    assert TEXT_ENV.from_string("{{ ''.__class__.__mro__ }}").render() == ""
    with pytest.raises(SecurityError):
        TEXT_ENV.from_string("{{ ''.__class__.__mro__[1].__subclasses__() }}").render()
    with pytest.raises(SecurityError):
        TEXT_ENV.from_string("{{ basket.append(1) }}").render(basket=[])
