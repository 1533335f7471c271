"""Tests of the built-in losses against hand-derived values, and of their edge cases.

Notation in the derivations: s = beta * (policy_logps - ref_logps), and
softplus(x) = log(1 + e^x), so -log sigmoid(m) = softplus(-m).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pydantic
import pytest
import torch

import larpo.losses
import larpo.plugins
import larpo.spec

BUILT_IN = ["contrastive", "dpo", "ipo", "lambdarank", "listmle", "sft", "simpo", "weighted"]

CONTRASTIVE_PLUS_SFT = {
    "terms": [
        {"plugin": "contrastive", "beta": 0.1, "weight": 1.0},
        {"plugin": "sft", "weight": 0.05},
    ]
}
LISTMLE_PLUS_DPO = {"terms": [{"plugin": "listmle", "weight": 0.5}, {"plugin": "dpo", "weight": 2.0}]}

# Losses that compare responses: each gives 0 on a list without an ordered pair.
PREFERENCE_CASES: list[tuple[str, dict[str, Any]]] = [
    ("contrastive", {}),
    ("contrastive", {"num_positives": 2}),
    ("lambdarank", {}),
    ("lambdarank", {"weighting": "ndcg"}),
    ("listmle", {}),
    ("dpo", {}),
    ("dpo", {"pairs": "best-all"}),
    ("dpo", {"pairs": "all"}),
    ("dpo", {"label_smoothing": 0.1}),
    ("dpo", {"label_smoothing": 0.1, "robust": True}),
    ("ipo", {}),
    ("ipo", {"pairs": "all"}),
    ("simpo", {}),
    ("simpo", {"pairs": "all"}),
    ("weighted", LISTMLE_PLUS_DPO),
]
ALL_CASES = PREFERENCE_CASES + [
    ("sft", {}),
    ("sft", {"length_normalize": False}),
    ("weighted", CONTRASTIVE_PLUS_SFT),
]


def case_id(case: tuple[str, dict[str, Any]]) -> str:
    name, params = case
    if name == "weighted":
        return "weighted-" + "+".join(term["plugin"] for term in params["terms"])
    return name + "".join(f"-{key}={value}" for key, value in params.items())


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def run_loss(loss_fn, policy, ref, mask, rewards=None, lengths=None):
    """Call ``loss_fn`` on leaf copies; return (losses, policy grad, ref grad, metrics)."""
    policy = policy.detach().clone().requires_grad_(True)
    ref = ref.detach().clone().requires_grad_(True)
    output = loss_fn(policy_logps=policy, ref_logps=ref, mask=mask, rewards=rewards, lengths=lengths)
    output.losses.sum().backward()
    ref_grad = ref.grad if ref.grad is not None else torch.zeros_like(ref)
    return output.losses.detach(), policy.grad, ref_grad, output.metrics


def f64(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def bools(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.bool)


def longs(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.long)


ZERO_REF = f64([[0.0, 0.0, 0.0]])
FULL_MASK = bools([[1, 1, 1]])


# -- registry --------------------------------------------------------------------------


def test_builtin_losses_registered():
    installed = larpo.losses.names()
    for name in BUILT_IN:
        assert name in installed


@pytest.mark.parametrize("case", ALL_CASES, ids=case_id)
def test_loss_returns_one_loss_per_list(case):
    name, params = case
    loss_fn = larpo.losses.get(name, **params)
    policy = f64([[-1.0, -2.0, -3.0], [-4.0, -2.0, 0.0]])
    ref = f64([[-1.5, -1.5, -1.5], [-1.0, -1.0, -1.0]])
    losses, _, _, metrics = run_loss(
        loss_fn,
        policy,
        ref,
        bools([[1, 1, 1], [1, 1, 0]]),
        f64([[2, 1, 0], [1, 0, 0]]),
        longs([[2, 3, 4], [1, 2, 0]]),
    )
    assert losses.shape == (2,)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
        assert key in metrics
        assert not metrics[key].requires_grad


# -- hand-computed values ----------------------------------------------------------------


def test_contrastive_hand_value():
    # beta = 1, ref = 0, so s = [2, 1, 0]. loss = -log(e^2 / (e^2 + e^1 + e^0))
    # = log(1 + e^-1 + e^-2).
    loss_fn = larpo.losses.get("contrastive", beta=1.0)
    losses, _, _, _ = run_loss(loss_fn, f64([[2.0, 1.0, 0.0]]), ZERO_REF, FULL_MASK)
    expected = math.log(1 + math.exp(-1) + math.exp(-2))
    assert losses.item() == pytest.approx(expected, rel=1e-12)


def test_contrastive_two_positives_hand_value():
    # s = [2, 1, 0, -1]; positives are slots 0 and 1, negatives slots 2 and 3.
    # positive 0: -log(e^2 / (e^2 + e^0 + e^-1)) = log(1 + e^-2 + e^-3)
    # positive 1: -log(e^1 / (e^1 + e^0 + e^-1)) = log(1 + e^-1 + e^-2)
    # The positives are never contrasted with each other; the loss is their mean.
    loss_fn = larpo.losses.get("contrastive", beta=1.0, num_positives=2)
    policy = f64([[2.0, 1.0, 0.0, -1.0]])
    ref = torch.zeros_like(policy)
    losses, _, _, _ = run_loss(loss_fn, policy, ref, bools([[1, 1, 1, 1]]), f64([[3, 2, 1, 0]]))
    first = math.log(1 + math.exp(-2) + math.exp(-3))
    second = math.log(1 + math.exp(-1) + math.exp(-2))
    assert losses.item() == pytest.approx((first + second) / 2, rel=1e-12)


def test_contrastive_two_positives_gradient():
    # d loss / d s_2 = (softmax weight of s_2 in pool 0 + in pool 1) / 2, with
    # pool 0 = {2, 0, -1} and pool 1 = {1, 0, -1}; with beta = 1 and ref = 0 that is
    # the gradient with respect to policy_logps[2].
    loss_fn = larpo.losses.get("contrastive", beta=1.0, num_positives=2)
    policy = f64([[2.0, 1.0, 0.0, -1.0]])
    _, grad, _, _ = run_loss(loss_fn, policy, torch.zeros_like(policy), bools([[1, 1, 1, 1]]))
    weight_0 = math.exp(0) / (math.exp(2) + math.exp(0) + math.exp(-1))
    weight_1 = math.exp(0) / (math.exp(1) + math.exp(0) + math.exp(-1))
    assert grad[0, 2].item() == pytest.approx((weight_0 + weight_1) / 2, rel=1e-12)


def test_contrastive_tie_with_positive_is_not_a_negative():
    # rewards [1, 1, 0]: slot 1 ties the positive, so it leaves the normaliser.
    # s = [2, 1, 0] -> loss = -log(e^2 / (e^2 + e^0)) = softplus(-2).
    loss_fn = larpo.losses.get("contrastive", beta=1.0)
    losses, grad, _, _ = run_loss(loss_fn, f64([[2.0, 1.0, 0.0]]), ZERO_REF, FULL_MASK, f64([[1, 1, 0]]))
    assert losses.item() == pytest.approx(softplus(-2.0), rel=1e-12)
    assert grad[0, 1].item() == 0.0


def test_lambdarank_hand_value():
    # beta = 1, s = [2, 1, 0]; ordered pairs (0,1), (0,2), (1,2) with margins 1, 2, 1.
    # Summed: 2 * softplus(-1) + softplus(-2).
    loss_fn = larpo.losses.get("lambdarank", beta=1.0)
    losses, _, _, _ = run_loss(loss_fn, f64([[2.0, 1.0, 0.0]]), ZERO_REF, FULL_MASK)
    assert losses.item() == pytest.approx(2 * softplus(-1.0) + softplus(-2.0), rel=1e-12)


def test_lambdarank_ndcg_hand_value():
    # rewards [2, 1, 0] -> gains G = 2^r - 1 = [3, 1, 0].
    # s = [2, 1, 0] ranks the slots 1, 2, 3 -> 1/D = 1/log2(1 + rank) = [1, 1/log2(3), 1/2].
    # w01 = |3 - 1| * |1 - 1/log2 3|, w02 = |3 - 0| * |1 - 1/2|, w12 = |1 - 0| * |1/log2 3 - 1/2|.
    # loss = w01 * softplus(-1) + w02 * softplus(-2) + w12 * softplus(-1).
    loss_fn = larpo.losses.get("lambdarank", beta=1.0, weighting="ndcg")
    losses, _, _, _ = run_loss(loss_fn, f64([[2.0, 1.0, 0.0]]), ZERO_REF, FULL_MASK, f64([[2, 1, 0]]))
    inv_d = [1.0, 1.0 / math.log2(3), 0.5]
    w01 = 2 * abs(inv_d[0] - inv_d[1])
    w02 = 3 * abs(inv_d[0] - inv_d[2])
    w12 = 1 * abs(inv_d[1] - inv_d[2])
    expected = w01 * softplus(-1.0) + w02 * softplus(-2.0) + w12 * softplus(-1.0)
    assert losses.item() == pytest.approx(expected, rel=1e-12)


def test_lambdarank_ndcg_uses_model_ranks():
    # s = [0, 1, 2] reverses the reranker order, so the model ranks the slots 3, 2, 1:
    # 1/D = [1/2, 1/log2(3), 1]. Gains as above: [3, 1, 0]; margins s_i - s_j are
    # -1 (0,1), -2 (0,2), -1 (1,2).
    loss_fn = larpo.losses.get("lambdarank", beta=1.0, weighting="ndcg")
    losses, _, _, _ = run_loss(loss_fn, f64([[0.0, 1.0, 2.0]]), ZERO_REF, FULL_MASK, f64([[2, 1, 0]]))
    inv_d = [0.5, 1.0 / math.log2(3), 1.0]
    w01 = 2 * abs(inv_d[0] - inv_d[1])
    w02 = 3 * abs(inv_d[0] - inv_d[2])
    w12 = 1 * abs(inv_d[1] - inv_d[2])
    expected = w01 * softplus(1.0) + w02 * softplus(2.0) + w12 * softplus(1.0)
    assert losses.item() == pytest.approx(expected, rel=1e-12)


def test_listmle_hand_value():
    # beta = 1, s = [2, 1, 0]. Plackett-Luce:
    # -log(e^2 / (e^2 + e^1 + e^0)) - log(e^1 / (e^1 + e^0)) - log(e^0 / e^0)
    # = log(1 + e^-1 + e^-2) + log(1 + e^-1) + 0.
    loss_fn = larpo.losses.get("listmle", beta=1.0)
    losses, _, _, _ = run_loss(loss_fn, f64([[2.0, 1.0, 0.0]]), ZERO_REF, FULL_MASK)
    expected = math.log(1 + math.exp(-1) + math.exp(-2)) + math.log(1 + math.exp(-1))
    assert losses.item() == pytest.approx(expected, rel=1e-12)


def test_listmle_ties_leave_each_others_normaliser():
    # rewards [1, 1, 0]: slots 0 and 1 tie, so neither is in the other's normaliser.
    # s = [2, 1, 0]: term 0 = -log(e^2 / (e^2 + e^0)) = softplus(-2),
    # term 1 = -log(e^1 / (e^1 + e^0)) = softplus(-1), term 2 = 0.
    loss_fn = larpo.losses.get("listmle", beta=1.0)
    losses, grad, _, _ = run_loss(loss_fn, f64([[2.0, 1.0, 0.0]]), ZERO_REF, FULL_MASK, f64([[1, 1, 0]]))
    assert losses.item() == pytest.approx(softplus(-2.0) + softplus(-1.0), rel=1e-12)
    # Swapping the tied slots' scores gives the same loss: the two are not ordered.
    swapped, _, _, _ = run_loss(loss_fn, f64([[1.0, 2.0, 0.0]]), ZERO_REF, FULL_MASK, f64([[1, 1, 0]]))
    assert swapped.item() == pytest.approx(losses.item(), rel=1e-12)
    assert torch.isfinite(grad).all()


def test_dpo_hand_value_best_worst():
    # beta = 0.1, log-ratios policy - ref = [1, 5, -1] -> s = [0.1, 0.5, -0.1].
    # best-worst takes slot 0 against slot 2: margin 0.2 -> softplus(-0.2).
    loss_fn = larpo.losses.get("dpo", beta=0.1)
    policy = f64([[-1.0, 3.0, -3.0]])
    ref = f64([[-2.0, -2.0, -2.0]])
    losses, grad, _, _ = run_loss(loss_fn, policy, ref, FULL_MASK)
    assert losses.item() == pytest.approx(softplus(-0.2), rel=1e-12)
    assert grad[0, 1].item() == 0.0


def test_dpo_hand_value_pair_selections():
    # s = [0.1, 0.5, -0.1] as above. Margins: (0,1) -0.4, (0,2) 0.2, (1,2) 0.6.
    # best-all: mean of (0,1) and (0,2); all: mean of the three pairs.
    policy = f64([[-1.0, 3.0, -3.0]])
    ref = f64([[-2.0, -2.0, -2.0]])
    best_all, _, _, _ = run_loss(larpo.losses.get("dpo", beta=0.1, pairs="best-all"), policy, ref, FULL_MASK)
    every, _, _, _ = run_loss(larpo.losses.get("dpo", beta=0.1, pairs="all"), policy, ref, FULL_MASK)
    assert best_all.item() == pytest.approx((softplus(0.4) + softplus(-0.2)) / 2, rel=1e-12)
    assert every.item() == pytest.approx((softplus(0.4) + softplus(-0.2) + softplus(-0.6)) / 3, rel=1e-12)


def test_dpo_label_smoothing_hand_values():
    # margin m = 0.2 (as above), eps = 0.1.
    # conservative: (1 - eps) * softplus(-m) + eps * softplus(m)
    # robust:       ((1 - eps) * softplus(-m) - eps * softplus(m)) / (1 - 2 eps)
    policy = f64([[-1.0, -3.0]])
    ref = f64([[-2.0, -2.0]])
    mask = bools([[1, 1]])
    conservative, _, _, _ = run_loss(larpo.losses.get("dpo", label_smoothing=0.1), policy, ref, mask)
    robust, _, _, _ = run_loss(larpo.losses.get("dpo", label_smoothing=0.1, robust=True), policy, ref, mask)
    assert conservative.item() == pytest.approx(0.9 * softplus(-0.2) + 0.1 * softplus(0.2), rel=1e-12)
    assert robust.item() == pytest.approx((0.9 * softplus(-0.2) - 0.1 * softplus(0.2)) / 0.8, rel=1e-12)


def test_ipo_hand_value():
    # h = (policy_w - ref_w) - (policy_l - ref_l) = (-1 + 2) - (-3 + 2) = 2.
    # beta = 0.5 -> target 1 / (2 * 0.5) = 1 -> loss = (2 - 1)^2 = 1.
    # d loss / d policy_w = 2 * (h - 1) = 2, and -2 for policy_l.
    loss_fn = larpo.losses.get("ipo", beta=0.5)
    policy = f64([[-1.0, -3.0]])
    losses, grad, _, _ = run_loss(loss_fn, policy, f64([[-2.0, -2.0]]), bools([[1, 1]]))
    assert losses.item() == pytest.approx(1.0, rel=1e-12)
    assert grad[0].tolist() == pytest.approx([2.0, -2.0], rel=1e-12)


def test_simpo_hand_value_ignores_reference():
    # beta = 2, gamma = 0.5, policy_logps [-3, -8] over [3, 4] tokens:
    # s = 2 * [-1, -2] = [-2, -4]; loss = -log sigmoid(-2 + 4 - 0.5) = softplus(-1.5).
    loss_fn = larpo.losses.get("simpo", beta=2.0, gamma=0.5)
    assert loss_fn.requires_reference is False
    policy = f64([[-3.0, -8.0]])
    lengths = longs([[3, 4]])
    mask = bools([[1, 1]])
    losses, _, ref_grad, _ = run_loss(loss_fn, policy, f64([[5.0, -9.0]]), mask, lengths=lengths)
    assert losses.item() == pytest.approx(softplus(-1.5), rel=1e-12)
    assert ref_grad.abs().sum().item() == 0.0
    without_ref = loss_fn(policy_logps=policy, mask=mask, lengths=lengths)
    assert without_ref.losses.item() == pytest.approx(softplus(-1.5), rel=1e-12)


def test_sft_hand_values():
    # slot 0: policy_logps -6 over 3 tokens -> per-token NLL 6 / 3 = 2; summed NLL 6.
    policy = f64([[-6.0, -1.0]])
    lengths = longs([[3, 2]])
    mask = bools([[1, 1]])
    normalised = larpo.losses.get("sft")(policy_logps=policy, mask=mask, lengths=lengths)
    summed = larpo.losses.get("sft", length_normalize=False)(policy_logps=policy, mask=mask)
    assert normalised.losses.item() == pytest.approx(2.0, rel=1e-12)
    assert summed.losses.item() == pytest.approx(6.0, rel=1e-12)


def test_sft_one_item_list_still_trains():
    # SFT needs no negative: a list with only its positive gives NLL = 4 / 2 = 2.
    loss_fn = larpo.losses.get("sft")
    losses, grad, _, _ = run_loss(
        loss_fn, f64([[-4.0, 0.0]]), f64([[0.0, 0.0]]), bools([[1, 0]]), lengths=longs([[2, 0]])
    )
    assert losses.item() == pytest.approx(2.0, rel=1e-12)
    assert grad[0].tolist() == pytest.approx([-0.5, 0.0], rel=1e-12)


def test_weighted_hand_value():
    # contrastive (beta 0.1): s = 0.1 * [1, -1] -> softplus(-0.2).
    # sft: slot 0 policy_logps -1 over 2 tokens -> 0.5. loss = softplus(-0.2) + 0.05 * 0.5.
    loss_fn = larpo.losses.get("weighted", **CONTRASTIVE_PLUS_SFT)
    assert loss_fn.requires_reference is True
    policy = f64([[-1.0, -3.0]])
    losses, _, _, metrics = run_loss(
        loss_fn, policy, f64([[-2.0, -2.0]]), bools([[1, 1]]), f64([[1, 0]]), longs([[2, 3]])
    )
    assert losses.item() == pytest.approx(softplus(-0.2) + 0.05 * 0.5, rel=1e-12)
    # Diagnostics are float32.
    assert metrics["loss/contrastive"].item() == pytest.approx(softplus(-0.2), rel=1e-6)
    assert metrics["loss/sft"].item() == pytest.approx(0.5, rel=1e-6)
    # The first term keeps the shared names; the later term's rewards/* get its label.
    assert metrics["rewards/chosen"].item() == pytest.approx(0.1, rel=1e-6)
    assert metrics["sft/rewards/chosen"].item() == pytest.approx(-0.5, rel=1e-6)


def test_weighted_repeated_names_get_indexed_labels():
    terms = [{"plugin": "dpo", "beta": 0.1}, {"plugin": "dpo", "beta": 0.5, "weight": 0.5}]
    loss_fn = larpo.losses.get("weighted", terms=terms)
    output = loss_fn(policy_logps=f64([[-1.0, -3.0]]), ref_logps=f64([[-2.0, -2.0]]), mask=bools([[1, 1]]))
    # dpo beta 0.1: margin 0.2; dpo beta 0.5: margin 1.0.
    assert output.losses.item() == pytest.approx(softplus(-0.2) + 0.5 * softplus(-1.0), rel=1e-12)
    assert "loss/dpo_0" in output.metrics
    assert "loss/dpo_1" in output.metrics
    assert "dpo_1/rewards/margins" in output.metrics


def test_weighted_reference_free_terms():
    terms = [{"plugin": "simpo"}, {"plugin": "sft", "weight": 0.1}]
    loss_fn = larpo.losses.get("weighted", terms=terms)
    assert loss_fn.requires_reference is False
    output = loss_fn(policy_logps=f64([[-3.0, -8.0]]), mask=bools([[1, 1]]), lengths=longs([[3, 4]]))
    # simpo as in test_simpo_hand_value: softplus(-1.5); sft: 3 / 3 = 1.
    assert output.losses.item() == pytest.approx(softplus(-1.5) + 0.1 * 1.0, rel=1e-12)


def test_pairwise_accuracy_diagnostic():
    # s = [0.1, 0.5, -0.1]; of the ordered pairs (0,1), (0,2), (1,2) only (0,1) is
    # wrong (0.1 < 0.5), so the accuracy is 2/3.
    loss_fn = larpo.losses.get("dpo", beta=0.1)
    _, _, _, metrics = run_loss(loss_fn, f64([[-1.0, 3.0, -3.0]]), f64([[-2.0, -2.0, -2.0]]), FULL_MASK)
    assert metrics["rewards/accuracies"].item() == pytest.approx(2 / 3, rel=1e-6)


# -- K = 2 reduces to DPO ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["contrastive", "lambdarank", "listmle"])
def test_two_item_lists_equal_dpo(name):
    generator = torch.Generator().manual_seed(0)
    policy = torch.randn(6, 2, generator=generator, dtype=torch.float64) * 5
    ref = torch.randn(6, 2, generator=generator, dtype=torch.float64) * 5
    mask = torch.ones(6, 2, dtype=torch.bool)
    rewards = f64([[1.0, 0.0]] * 6)
    expected, expected_grad, expected_ref_grad, _ = run_loss(
        larpo.losses.get("dpo", beta=0.3), policy, ref, mask, rewards
    )
    losses, grad, ref_grad, _ = run_loss(larpo.losses.get(name, beta=0.3), policy, ref, mask, rewards)
    torch.testing.assert_close(losses, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ref_grad, expected_ref_grad, rtol=1e-12, atol=1e-12)


# -- padding, one-item lists and ties ------------------------------------------------------


@pytest.mark.parametrize("case", ALL_CASES, ids=case_id)
def test_padding_invariance(case):
    name, params = case
    loss_fn = larpo.losses.get(name, **params)
    policy = f64([[-4.0, -6.5, -9.0], [-3.0, -2.0, -7.0]])
    ref = f64([[-5.0, -5.0, -6.0], [-4.0, -4.0, -4.0]])
    mask = bools([[1, 1, 1], [1, 1, 0]])
    rewards = f64([[1.0, 0.5, 0.0], [1.0, 0.0, 0.0]])
    lengths = longs([[4, 5, 6], [3, 2, 0]])
    base_losses, base_grad, base_ref_grad, _ = run_loss(loss_fn, policy, ref, mask, rewards, lengths)

    # Two more padded slots per row, holding values that would change any loss they reached.
    garbage = f64([[250.0, -7000.0], [900.0, 3.0]])
    padded_losses, padded_grad, padded_ref_grad, _ = run_loss(
        loss_fn,
        torch.cat([policy, garbage], dim=1),
        torch.cat([ref, -garbage], dim=1),
        torch.cat([mask, torch.zeros(2, 2, dtype=torch.bool)], dim=1),
        torch.cat([rewards, f64([[9.0, -9.0], [9.0, 9.0]])], dim=1),
        torch.cat([lengths, longs([[0, 7], [0, 0]])], dim=1),
    )
    torch.testing.assert_close(padded_losses, base_losses, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(padded_grad[:, :3], base_grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(padded_ref_grad[:, :3], base_ref_grad, rtol=1e-12, atol=1e-12)
    assert padded_grad[:, 3:].abs().sum().item() == 0.0
    assert padded_ref_grad[:, 3:].abs().sum().item() == 0.0


@pytest.mark.parametrize("case", PREFERENCE_CASES, ids=case_id)
def test_one_item_list_gives_zero(case):
    name, params = case
    loss_fn = larpo.losses.get(name, **params)
    losses, grad, ref_grad, metrics = run_loss(
        loss_fn,
        f64([[-3.0, 5.0, 5.0]]),
        f64([[-1.0, 0.0, 0.0]]),
        bools([[1, 0, 0]]),
        f64([[1.0, 0.0, 0.0]]),
        longs([[4, 0, 0]]),
    )
    assert losses.item() == 0.0
    assert grad.abs().sum().item() == 0.0
    assert ref_grad.abs().sum().item() == 0.0
    for value in metrics.values():
        assert torch.isfinite(value).all()


@pytest.mark.parametrize("case", ALL_CASES, ids=case_id)
def test_empty_row_gives_zero(case):
    name, params = case
    loss_fn = larpo.losses.get(name, **params)
    losses, grad, ref_grad, _ = run_loss(
        loss_fn,
        f64([[-3.0, -1.0], [-2.0, -5.0]]),
        f64([[-2.0, -2.0], [-2.0, -2.0]]),
        bools([[0, 0], [1, 1]]),
        f64([[0.0, 0.0], [1.0, 0.0]]),
        longs([[0, 0], [2, 2]]),
    )
    assert losses[0].item() == 0.0
    assert grad[0].abs().sum().item() == 0.0
    assert ref_grad[0].abs().sum().item() == 0.0
    assert torch.isfinite(losses).all()


@pytest.mark.parametrize("case", PREFERENCE_CASES, ids=case_id)
def test_all_tied_list_gives_zero(case):
    # Tied rewards form no ordered pair, so a list whose rewards are all equal
    # carries no preference.
    name, params = case
    loss_fn = larpo.losses.get(name, **params)
    losses, grad, _, _ = run_loss(
        loss_fn,
        f64([[-3.0, -1.0, -2.0]]),
        f64([[-2.0, -2.0, -2.0]]),
        FULL_MASK,
        f64([[0.5, 0.5, 0.5]]),
        longs([[2, 3, 4]]),
    )
    assert losses.item() == 0.0
    assert grad.abs().sum().item() == 0.0


# NDCG weights are built from the rewards themselves, so that case is left out.
ORDER_ONLY_CASES = [case for case in ALL_CASES if case[1].get("weighting") != "ndcg"]


@pytest.mark.parametrize("case", ORDER_ONLY_CASES, ids=case_id)
def test_distinct_rewards_match_slot_order(case):
    # Without ties, rewards add nothing to the slot order: passing them changes nothing.
    name, params = case
    loss_fn = larpo.losses.get(name, **params)
    policy = f64([[-3.0, -1.0, -2.0]])
    ref = f64([[-2.0, -2.5, -1.0]])
    lengths = longs([[2, 3, 4]])
    with_rewards, _, _, _ = run_loss(loss_fn, policy, ref, FULL_MASK, f64([[3.0, 2.0, 1.0]]), lengths)
    without, _, _, _ = run_loss(loss_fn, policy, ref, FULL_MASK, None, lengths)
    torch.testing.assert_close(with_rewards, without, rtol=1e-12, atol=1e-12)


# -- numerics ------------------------------------------------------------------------------

EXTREME_POLICY = [[1e4, -1e4, 1e4, -1e4], [-1e4, 1e4, -1e4, 1e4]]
EXTREME_REF = [[-1e4, 1e4, 1e4, 1e4], [1e4, -1e4, 0.0, 0.0]]


def extreme_inputs() -> dict[str, torch.Tensor]:
    return {
        "policy": torch.tensor(EXTREME_POLICY),
        "ref": torch.tensor(EXTREME_REF),
        "mask": bools([[1, 1, 1, 1], [1, 1, 1, 0]]),
        "rewards": torch.tensor([[1.0, 0.5, 0.25, 0.0], [1.0, 0.5, 0.0, 0.0]]),
        "lengths": longs([[1, 2, 3, 4], [5, 6, 7, 0]]),
    }


@pytest.mark.parametrize("case", ALL_CASES, ids=case_id)
def test_extreme_logps_fp32_finite(case):
    name, params = case
    loss_fn = larpo.losses.get(name, **params)
    inputs = extreme_inputs()
    losses, grad, ref_grad, metrics = run_loss(
        loss_fn,
        inputs["policy"],
        inputs["ref"],
        inputs["mask"],
        inputs["rewards"],
        inputs["lengths"],
    )
    assert torch.isfinite(losses).all()
    assert torch.isfinite(grad).all()
    assert torch.isfinite(ref_grad).all()
    for value in metrics.values():
        assert torch.isfinite(value).all()


@pytest.mark.parametrize("case", ALL_CASES, ids=case_id)
def test_extreme_logps_bf16_autocast_finite(case):
    name, params = case
    loss_fn = larpo.losses.get(name, **params)
    inputs = extreme_inputs()
    policy = inputs["policy"].requires_grad_(True)
    ref = inputs["ref"].requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = loss_fn(
            policy_logps=policy,
            ref_logps=ref,
            mask=inputs["mask"],
            rewards=inputs["rewards"],
            lengths=inputs["lengths"],
        )
    output.losses.sum().backward()
    assert torch.isfinite(output.losses).all()
    assert torch.isfinite(policy.grad).all()
    if ref.grad is not None:
        assert torch.isfinite(ref.grad).all()


@pytest.mark.parametrize("case", ALL_CASES, ids=case_id)
def test_bf16_inputs_finite(case):
    name, params = case
    loss_fn = larpo.losses.get(name, **params)
    inputs = extreme_inputs()
    policy = inputs["policy"].to(torch.bfloat16).requires_grad_(True)
    ref = inputs["ref"].to(torch.bfloat16)
    output = loss_fn(
        policy_logps=policy,
        ref_logps=ref,
        mask=inputs["mask"],
        rewards=inputs["rewards"].to(torch.bfloat16),
        lengths=inputs["lengths"],
    )
    output.losses.sum().backward()
    assert torch.isfinite(output.losses.float()).all()
    assert torch.isfinite(policy.grad.float()).all()


@pytest.mark.parametrize("case", ALL_CASES, ids=case_id)
def test_gradcheck_float64(case):
    name, params = case
    loss_fn = larpo.losses.get(name, **params)
    generator = torch.Generator().manual_seed(1)
    # Scores kept apart from each other, so that NDCG ranks stay fixed under the
    # finite-difference steps.
    policy = (torch.arange(5, dtype=torch.float64).flip(0) * 3).repeat(2, 1)
    policy = policy + 0.1 * torch.randn(2, 5, generator=generator, dtype=torch.float64)
    policy = policy.requires_grad_(True)
    ref = torch.randn(2, 5, generator=generator, dtype=torch.float64).requires_grad_(True)
    mask = bools([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    rewards = f64([[1.0, 0.75, 0.75, 0.25, 0.0], [1.0, 0.5, 0.0, 0.0, 0.0]])
    lengths = longs([[3, 4, 5, 6, 7], [2, 3, 4, 0, 0]])

    def losses_of(policy_logps, ref_logps):
        return loss_fn(
            policy_logps=policy_logps,
            ref_logps=ref_logps,
            mask=mask,
            rewards=rewards,
            lengths=lengths,
        ).losses

    assert torch.autograd.gradcheck(losses_of, (policy, ref), eps=1e-6, atol=1e-7)


# -- errors --------------------------------------------------------------------------------


def test_unknown_loss_name_lists_installed():
    with pytest.raises(KeyError) as raised:
        larpo.losses.get("listnet")
    message = str(raised.value)
    assert "listnet" in message
    for name in BUILT_IN:
        assert name in message


@pytest.mark.parametrize(
    ("name", "params", "field", "hint"),
    [
        ("contrastive", {"beta": 0.0}, "beta", "greater than 0"),
        ("lambdarank", {"beta": -1.0}, "beta", "greater than 0"),
        ("listmle", {"beta": float("inf")}, "beta", "finite"),
        ("lambdarank", {"weighting": "dcg"}, "weighting", "'none' or 'ndcg'"),
        ("dpo", {"pairs": "worst-best"}, "pairs", "'best-worst', 'best-all' or 'all'"),
        ("dpo", {"label_smoothing": 0.5}, "label_smoothing", "less than 0.5"),
        ("simpo", {"gamma": -0.1}, "gamma", "greater than or equal to 0"),
        ("contrastive", {"num_positives": 0}, "num_positives", "greater than or equal to 1"),
        ("listmle", {"betta": 0.1}, "betta", "Extra inputs are not permitted"),
        ("weighted", {"terms": []}, "terms", "at least 1 item"),
    ],
)
def test_bad_params_rejected(name, params, field, hint):
    with pytest.raises(pydantic.ValidationError) as raised:
        larpo.losses.get(name, **params)
    message = str(raised.value)
    assert field in message
    assert hint in message


def test_reference_needed_when_missing():
    loss_fn = larpo.losses.get("contrastive")
    with pytest.raises(ValueError, match="needs ref_logps"):
        loss_fn(policy_logps=f64([[-1.0, -2.0]]), mask=bools([[1, 1]]))


@pytest.mark.parametrize(("name", "params"), [("simpo", {}), ("sft", {})])
def test_lengths_needed_when_missing(name, params):
    loss_fn = larpo.losses.get(name, **params)
    with pytest.raises(ValueError, match="needs lengths"):
        loss_fn(policy_logps=f64([[-1.0, -2.0]]), mask=bools([[1, 1]]))


def test_ndcg_weighting_needs_rewards():
    loss_fn = larpo.losses.get("lambdarank", weighting="ndcg")
    with pytest.raises(ValueError, match="needs rewards"):
        loss_fn(policy_logps=f64([[-1.0, -2.0]]), ref_logps=f64([[0.0, 0.0]]), mask=bools([[1, 1]]))


# -- spec validation -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_spec() -> dict[str, Any]:
    return larpo.spec.load_yaml(Path(__file__).resolve().parents[1] / "examples" / "quickstart.yaml")


def spec_errors(base: dict[str, Any], loss: dict[str, Any]) -> dict[str, str]:
    data = copy.deepcopy(base)
    data["loss"] = loss
    with pytest.raises(larpo.spec.SpecError) as raised:
        larpo.spec.validate_spec(data, larpo.plugins.get_host().registries)
    return dict(raised.value.errors)


@pytest.mark.parametrize(
    "loss",
    [
        {"plugin": "listmle", "beta": 0.1},
        {"plugin": "lambdarank", "beta": 0.1, "weighting": "ndcg"},
        {"plugin": "dpo", "pairs": "all", "label_smoothing": 0.1},
        {"plugin": "weighted", **CONTRASTIVE_PLUS_SFT},
    ],
)
def test_spec_accepts_valid_loss(base_spec, loss):
    data = copy.deepcopy(base_spec)
    data["loss"] = loss
    spec = larpo.spec.validate_spec(data, larpo.plugins.get_host().registries)
    assert spec.loss.plugin == loss["plugin"]


def test_spec_rejects_bad_beta_and_weighting(base_spec):
    errors = spec_errors(base_spec, {"plugin": "lambdarank", "beta": -0.1, "weighting": "ndgc"})
    assert "greater than 0" in errors["loss.beta"]
    assert "'none' or 'ndcg'" in errors["loss.weighting"]


def test_spec_rejects_unknown_loss(base_spec):
    errors = spec_errors(base_spec, {"plugin": "listmel"})
    assert "'listmle'" in errors["loss.plugin"]


def test_spec_reports_weighted_term_errors_by_index(base_spec):
    loss = {
        "plugin": "weighted",
        "terms": [
            {"plugin": "contrastive", "beta": 0.1},
            {"plugin": "contrastive", "beta": 0.0},
            {"plugin": "sft", "weight": -1.0},
            {"plugin": "lambdarank", "weighting": "err"},
            {"plugin": "listmle", "betta": 0.1},
            {"plugin": "rankmle"},
            {"weight": 1.0},
            {"plugin": "weighted", "terms": []},
        ],
    }
    errors = spec_errors(base_spec, loss)
    assert "greater than 0" in errors["loss.terms.1.beta"]
    assert "greater than or equal to 0" in errors["loss.terms.2.weight"]
    assert "'none' or 'ndcg'" in errors["loss.terms.3.weighting"]
    assert "Did you mean 'beta'?" in errors["loss.terms.4.betta"]
    assert "unknown loss plugin 'rankmle'" in errors["loss.terms.5.plugin"]
    assert "no 'plugin' key" in errors["loss.terms.6.plugin"]
    assert "cannot itself be 'weighted'" in errors["loss.terms.7.plugin"]
    assert not any(path.startswith("loss.terms.0") for path in errors)


def test_spec_rejects_all_zero_weights(base_spec):
    errors = spec_errors(base_spec, {"plugin": "weighted", "terms": [{"plugin": "sft", "weight": 0.0}]})
    assert "positive weight" in errors["loss.terms"]
