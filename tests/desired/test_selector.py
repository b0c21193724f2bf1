"""Label selectors (SPEC 5, ``-l``) as plain values: what matches and what is refused."""

from __future__ import annotations

import pytest

from reconciler.desired.selector import SELECTOR_SYNTAX, SelectorError, parse_selector, select

LABELS = {
    "web": {"team": "shop", "tier": "front"},
    "db": {"team": "shop", "tier": "db"},
    "ci": {"team": "tools"},
}


@pytest.mark.parametrize(
    ("text", "chosen"),
    [
        ("team=shop", ["web", "db"]),
        ("team==shop", ["web", "db"]),
        ("team=shop,tier=db", ["db"]),
        (" team = shop , tier != db ", ["web"]),
        ("tier!=db", ["web", "ci"]),  # an absent label is "not db"
        ("team=nobody", []),
        ("tier=", []),
    ],
)
def test_a_selector_chooses_by_every_requirement(text: str, chosen: list[str]) -> None:
    assert select(["web", "db", "ci"], LABELS, parse_selector(text)) == chosen


def test_no_selector_chooses_everything_even_unlabelled() -> None:
    assert select(["web", "gone"], LABELS, None) == ["web", "gone"]
    assert select(["web", "gone"], LABELS, parse_selector("team!=tools")) == ["web", "gone"]


def test_a_selector_prints_as_it_would_be_typed() -> None:
    assert str(parse_selector("team==shop, tier!=db")) == "team=shop,tier!=db"


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("", "empty"),
        ("team", "'team' in 'team' has no '='"),
        ("team=shop,", "'' in 'team=shop,' has no '='"),
        ("=shop", "the label key is empty"),
        ("my team=shop", "may not hold blanks"),
        ("team=a=b", "more than one '='"),
        ("tier in (db)", "set-based selectors are not supported"),
    ],
)
def test_bad_syntax_says_what_is_accepted(text: str, said: str) -> None:
    with pytest.raises(SelectorError) as caught:
        parse_selector(text)
    assert said in str(caught.value)
    assert SELECTOR_SYNTAX in str(caught.value)
