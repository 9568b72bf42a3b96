"""Terms over the previous step's message: the pure rule."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from scheduler.terms import MessageFacts, term_holds, terms_hold

FACTS = ["opened", "clicked", "delivered", "unsubscribed_email", "unsubscribed_sms", "ordered"]
TERMS = FACTS + [f"not_{fact}" for fact in FACTS]
facts_strategy = st.builds(MessageFacts, *(st.booleans() for _ in FACTS))


def test_click_counts_as_open_when_images_were_blocked() -> None:
    assert term_holds("opened", MessageFacts(clicked=True))
    assert not term_holds("not_opened", MessageFacts(clicked=True))


def test_seed_chain_term_unsubscribed_email() -> None:
    assert terms_hold(["unsubscribed_email"], "all", MessageFacts(unsubscribed_email=True))
    assert not terms_hold(["unsubscribed_email"], "all", MessageFacts(opened=True))


def test_any_and_all() -> None:
    facts = MessageFacts(opened=True)
    assert terms_hold(["not_opened", "opened"], "any", facts)
    assert not terms_hold(["not_opened", "opened"], "all", facts)
    assert terms_hold(["not_clicked", "opened"], "all", facts)


@given(term=st.sampled_from(TERMS), facts=facts_strategy)
def test_a_term_and_its_negation_never_agree(term: str, facts: MessageFacts) -> None:
    opposite = term.removeprefix("not_") if term.startswith("not_") else f"not_{term}"
    assert term_holds(term, facts) != term_holds(opposite, facts)


@given(terms=st.lists(st.sampled_from(TERMS), min_size=1, max_size=5), facts=facts_strategy)
def test_all_implies_any(terms: list[str], facts: MessageFacts) -> None:
    if terms_hold(terms, "all", facts):
        assert terms_hold(terms, "any", facts)
