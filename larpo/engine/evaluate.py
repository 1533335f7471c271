"""Evaluate phase: held-out greedy accuracy, Pass@N (Recall@N), ranking quality and drift.

Ranking quality orders each prompt's Pass@K samples by the policy's sequence log-prob
and compares that order with the reranker's rewards (NDCG@K, MRR, Kendall tau-b). Drift
is the greedy win rate against round 0 and a KL estimate to the initial model.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from math import comb
from pathlib import Path
from typing import Any

from larpo.atomic import read_jsonl, write_jsonl
from larpo.engine.context import RunContext
from larpo.engine.reference import initial_policy, score_items
from larpo.engine.rerank import run_rerank
from larpo.engine.sample import draw
from larpo.metrics import kendall_tau, kl_estimate, mrr, ndcg_at_k, win_rate
from larpo.types import STATUS_OK, Candidate, Prompt

logger = logging.getLogger("larpo")


def pass_at(num_samples: int, num_correct: int, n: int) -> float:
    """Unbiased Pass@n from ``num_samples`` draws with ``num_correct`` successes (Chen et al., 2021)."""
    if n > num_samples:
        raise ValueError(f"Pass@{n} needs at least {n} samples, got {num_samples}")
    if num_samples - num_correct < n:
        return 1.0
    return 1.0 - comb(num_samples - num_correct, n) / comb(num_samples, n)


def _responses(
    ctx: RunContext, prompts: Sequence[Prompt], samples: list[list[Any]], round_index: int, temperature: float
) -> list[Candidate]:
    candidates = []
    for prompt, prompt_samples in zip(prompts, samples):
        for k, sample in enumerate(prompt_samples):
            candidates.append(
                Candidate(
                    id=f"{prompt.id}/eval{round_index}/{k}",
                    prompt_id=prompt.id,
                    text=sample.text,
                    token_ids=list(sample.token_ids),
                    finished=sample.finished,
                    behaviour_logps=sample.behaviour_logps,
                    round_index=round_index,
                    temperature=temperature,
                )
            )
    return candidates


def run_evaluate(
    ctx: RunContext, round_index: int, *, out_dir: Path | None = None, baseline_greedy: Path | None = None
) -> dict[str, Any]:
    """Evaluate the current policy on the held-out prompts; return the metrics row.

    Responses go to ``out_dir`` (default: the round's folder). ``baseline_greedy`` is the
    ``eval_greedy.jsonl`` that the win rate compares against (default: round 0's, from
    round 1 on).
    """
    settings = ctx.evaluation
    prompts = ctx.prompts.heldout
    max_new_tokens = settings.max_new_tokens or ctx.rounds.max_new_tokens
    threshold = settings.success_threshold
    metrics: dict[str, Any] = {"round": round_index, "eval/prompts": len(prompts)}
    if not prompts:
        return metrics
    if out_dir is None:
        out_dir = ctx.round_dir(round_index)
    if baseline_greedy is None and round_index > 0:
        baseline_greedy = ctx.run_dir / "round-000" / "eval_greedy.jsonl"

    if settings.greedy:
        samples = draw(
            ctx,
            prompts,
            num_samples=1,
            temperature=0.0,
            max_new_tokens=max_new_tokens,
            seed=ctx.phase_seed(round_index, "evaluate"),
            desc=f"round {round_index} eval greedy",
        )
        greedy = _responses(ctx, prompts, samples, round_index, 0.0)
        statuses = run_rerank(ctx, greedy, desc=f"round {round_index} eval rerank")
        correct = [float(c.reward or 0.0) >= threshold for c in greedy]
        accuracy = sum(correct) / len(correct)
        metrics["eval/greedy_accuracy"] = accuracy
        metrics["eval/greedy_accuracy_se"] = (accuracy * (1 - accuracy) / len(correct)) ** 0.5
        metrics["eval/greedy_reward"] = sum(float(c.reward or 0.0) for c in greedy) / len(greedy)
        metrics["eval/greedy_length"] = sum(c.num_tokens for c in greedy) / len(greedy)
        metrics["eval/greedy_invalid"] = sum(n for s, n in statuses.items() if s != STATUS_OK)
        write_jsonl(out_dir / "eval_greedy.jsonl", (c.to_dict() for c in greedy))
        if baseline_greedy is not None:
            metrics.update(win_rate_metrics(greedy, baseline_greedy))

    first_or_last = round_index in (0, ctx.rounds.count)
    if settings.pass_k > 0 and (settings.pass_k_rounds == "all" or first_or_last):
        k = settings.pass_k
        samples = draw(
            ctx,
            prompts,
            num_samples=k,
            temperature=settings.temperature,
            max_new_tokens=max_new_tokens,
            seed=ctx.phase_seed(round_index, "evaluate") + 1,
            desc=f"round {round_index} eval pass@{k}",
        )
        sampled = _responses(ctx, prompts, samples, round_index, settings.temperature)
        run_rerank(ctx, sampled, desc=f"round {round_index} eval rerank")
        for n in range(1, k + 1):
            values = []
            for i in range(len(prompts)):
                group = sampled[i * k : (i + 1) * k]
                num_correct = sum(float(c.reward or 0.0) >= threshold for c in group)
                values.append(pass_at(k, num_correct, n))
            metrics[f"eval/pass@{n}"] = sum(values) / len(values)
        metrics["eval/sample_reward"] = sum(float(c.reward or 0.0) for c in sampled) / len(sampled)
        write_jsonl(out_dir / "eval_samples.jsonl", (c.to_dict() for c in sampled))
        if k >= 2:
            groups = [sampled[i * k : (i + 1) * k] for i in range(len(prompts))]
            metrics.update(ranking_metrics(groups, threshold))
        metrics.update(kl_metrics(ctx, sampled, round_index))
    return metrics


def ranking_metrics(groups: Sequence[Sequence[Candidate]], threshold: float) -> dict[str, Any]:
    """Compare each prompt's policy order (by ``behaviour_logps``) with its reranker rewards.

    NDCG@K takes the rewards minus the list's minimum reward as gains, so that any reward
    scale gives non-negative gains. NDCG@K and Kendall tau are undefined for a list whose
    rewards are all equal, so they average over the other lists (``eval/ranked_prompts``)
    and are left out when there are none. MRR averages over every list.
    """
    k = len(groups[0])
    ordered = []
    ndcg_values = []
    tau_values = []
    for group in groups:
        by_policy = sorted(group, key=lambda c: c.behaviour_logps, reverse=True)
        rewards = [float(c.reward or 0.0) for c in by_policy]
        ordered.append(rewards)
        lowest = min(rewards)
        ndcg = ndcg_at_k([r - lowest for r in rewards], k)
        if not math.isnan(ndcg):
            ndcg_values.append(ndcg)
        tau = kendall_tau([c.behaviour_logps for c in group], [float(c.reward or 0.0) for c in group])
        if not math.isnan(tau):
            tau_values.append(tau)
    metrics: dict[str, Any] = {"eval/mrr": mrr(ordered, threshold), "eval/ranked_prompts": len(ndcg_values)}
    if ndcg_values:
        metrics[f"eval/ndcg@{k}"] = sum(ndcg_values) / len(ndcg_values)
    if tau_values:
        metrics["eval/kendall_tau"] = sum(tau_values) / len(tau_values)
    return metrics


def win_rate_metrics(greedy: Sequence[Candidate], baseline_path: Path) -> dict[str, Any]:
    """Return the greedy win rate against the baseline file's greedy responses, judged by reward.

    Only prompts present in both are compared; the result is empty when the file is missing.
    """
    if not baseline_path.is_file():
        return {}
    baseline = {row["prompt_id"]: float(row["reward"] or 0.0) for row in read_jsonl(baseline_path)}
    pairs = [(float(c.reward or 0.0), baseline[c.prompt_id]) for c in greedy if c.prompt_id in baseline]
    if not pairs:
        logger.warning("no held-out prompt of this evaluation is in %s; skipping the win rate", baseline_path)
        return {}
    return {"eval/win_rate_vs_round0": win_rate([p for p, _ in pairs], [b for _, b in pairs])}


def has_initial_policy(ctx: RunContext) -> bool:
    """Return whether ``initial_policy`` can restore the starting model (a LoRA adapter or saved weights)."""
    if getattr(ctx.retriever.model, "disable_adapter", None) is not None:
        return True
    return (ctx.run_dir / "initial-weights.safetensors").is_file()


def kl_metrics(ctx: RunContext, sampled: Sequence[Candidate], round_index: int) -> dict[str, Any]:
    """Estimate KL(policy || initial model) on the Pass@K samples; empty when the initial model is unavailable.

    The policy's log-probs are the samples' ``behaviour_logps`` (temperature 1, summed over
    response tokens, computed during generation), so only the initial model runs a forward pass.
    """
    if not sampled or not has_initial_policy(ctx):
        return {}
    # NOTE: the estimate is unbiased only for samples drawn at temperature 1 without top-p
    # truncation; other evaluation settings bias it. Truncated responses (no end-of-sequence
    # token) contribute the log-probs of their prefix.
    items = [(c.prompt_id, c) for c in sampled]
    with initial_policy(ctx):
        initial_logps = score_items(ctx, items, desc=f"round {round_index} eval initial log-probs")
    return {"eval/kl_to_initial": kl_estimate([c.behaviour_logps for c in sampled], initial_logps.tolist())}


def load_policy(retriever: Any, folder: Path) -> None:
    """Load a round's ``checkpoint/`` folder into a freshly built retriever's model.

    A folder with ``adapter_model.safetensors`` is a LoRA adapter: the model becomes a
    ``PeftModel`` whose ``disable_adapter()`` gives back the base model. Otherwise
    ``model.safetensors`` contains full weights, loaded in place.
    """
    from safetensors.torch import load_file

    if (folder / "adapter_model.safetensors").is_file():
        from peft import PeftModel

        retriever.model = PeftModel.from_pretrained(retriever.model, str(folder))
        retriever.model.eval()
        return
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(
            f"no adapter_model.safetensors or model.safetensors in {folder}; pass a round's checkpoint/ folder"
        )
    missing, unexpected = retriever.model.load_state_dict(load_file(str(weights)), strict=False)
    # Tied embeddings are saved once, so the output head may be reported missing.
    real_missing = [key for key in missing if "lm_head" not in key]
    if real_missing or unexpected:
        raise RuntimeError(
            f"checkpoint {folder} does not match the spec's retriever model: "
            f"missing {real_missing[:5]}, unexpected {unexpected[:5]}"
        )
