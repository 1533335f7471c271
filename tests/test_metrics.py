"""Evaluation arithmetic: Pass@n, the accuracy change and the summary table."""

from __future__ import annotations

import pytest

from larpo.engine.evaluate import pass_at
from larpo.engine.summary import accuracy_change, format_summary


def test_pass_at_hand_values():
    # 4 samples, 1 correct: Pass@1 = 1/4; Pass@2 = 1 - C(3,2)/C(4,2) = 1 - 3/6 = 1/2.
    assert pass_at(4, 1, 1) == pytest.approx(0.25)
    assert pass_at(4, 1, 2) == pytest.approx(0.5)
    # Pass@4 with one success among 4 draws is certain; with none it is 0.
    assert pass_at(4, 1, 4) == 1.0
    assert pass_at(4, 0, 4) == 0.0
    # 4 samples, 2 correct: Pass@3 = 1 - C(2,3)/C(4,3) = 1 (fewer than 3 failures).
    assert pass_at(4, 2, 3) == 1.0


def test_pass_at_rejects_n_above_samples():
    with pytest.raises(ValueError, match="at least 5 samples"):
        pass_at(4, 1, 5)


def test_accuracy_change_in_standard_errors():
    # se_0 = 0.03, se_1 = 0.04: the difference's se is sqrt(0.0009 + 0.0016) = 0.05,
    # so a change of 0.5 - 0.4 = 0.1 is +2.00 standard errors.
    history = [
        {"round": 0, "eval/greedy_accuracy": 0.4, "eval/greedy_accuracy_se": 0.03},
        {"round": 3, "eval/greedy_accuracy": 0.5, "eval/greedy_accuracy_se": 0.04},
    ]
    text = accuracy_change(history)
    assert text is not None
    assert "change +0.100" in text
    assert "+2.00 standard errors" in text


def test_accuracy_change_needs_two_rounds():
    assert accuracy_change([{"round": 0, "eval/greedy_accuracy": 0.4, "eval/greedy_accuracy_se": 0.03}]) is None


def test_summary_table_rows():
    history = [
        {"round": 0, "eval/greedy_accuracy": 0.453125, "eval/pass@1": 0.3, "eval/pass@4": 0.7},
        {"round": 1, "eval/greedy_accuracy": 0.5, "mine/lists": 40, "train/loss": 1.25},
    ]
    lines = format_summary(history).splitlines()
    assert len(lines) == 4
    assert lines[0].split()[:3] == ["round", "greedy", "acc"]
    assert "0.453" in lines[2]
    assert "0.700" in lines[2]
    assert "40" in lines[3]
    assert "1.2500" in lines[3]
