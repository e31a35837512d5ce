import pytest

from kpistream.streams.labels import NONE, OTHER, LabelBudget, sanitize


def test_allowlist_folds_the_rest_into_other() -> None:
    budget = LabelBudget(allowlist=["black-friday"], max_values=1)
    assert budget.unknown(["x", "black-friday"]) == set()
    assert budget.label("black-friday") == "black-friday"
    assert budget.label("spring") == OTHER
    assert budget.label(None) == NONE


def test_budget_admits_learned_values_then_folds() -> None:
    budget = LabelBudget(max_values=2)
    assert budget.unknown(["a", "b", "c"]) == {"a", "b", "c"}
    budget.learn({"a", "b"}, full=True)
    assert budget.label("a") == "a"
    assert budget.label("c") == OTHER
    # Full: a new value is still asked once (the store counts it refused, or admits it if
    # a slot came free); asked again only after it was forgotten.
    assert budget.unknown(["d"]) == {"d"}
    budget.learn({"a", "b"}, full=True)
    assert budget.label("d") == OTHER
    assert budget.unknown(["d", "a"]) == set()


def test_undecided_value_is_a_bug_not_a_silent_label() -> None:
    budget = LabelBudget(max_values=5)
    with pytest.raises(KeyError):
        budget.label("never-admitted")


def test_sanitize_strips_control_characters_and_caps_length() -> None:
    assert sanitize("spring\x1fsale") == "springsale"
    assert sanitize("x" * 500) == "x" * 100
    assert sanitize("\x00\x01") == NONE


def test_fold_labels_are_reserved() -> None:
    """A site or campaign named like a fold label keeps its own series."""
    budget = LabelBudget(max_values=5)
    assert budget.unknown(["other", "none", "shop"]) == {"other_", "none_", "shop"}
    budget.learn({"other_", "none_", "shop"}, full=False)
    assert budget.label("other") == "other_"
    assert budget.label("none") == "none_"
    assert budget.label(None) == NONE
    full = LabelBudget(max_values=1)
    full.learn({"shop"}, full=True)
    assert full.label("other") == OTHER  # folded, not named
