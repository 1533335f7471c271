"""Evaluate phase: held-out greedy accuracy, Pass@N (Recall@N) and response statistics."""

from __future__ import annotations

from collections.abc import Sequence
from math import comb
from typing import Any

from larpo.atomic import write_jsonl
from larpo.engine.context import RunContext
from larpo.engine.rerank import run_rerank
from larpo.engine.sample import draw
from larpo.types import STATUS_OK, Candidate, Prompt


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


def run_evaluate(ctx: RunContext, round_index: int) -> dict[str, Any]:
    """Evaluate the current policy on the held-out prompts."""
    settings = ctx.evaluation
    prompts = ctx.prompts.heldout
    max_new_tokens = settings.max_new_tokens or ctx.rounds.max_new_tokens
    threshold = settings.success_threshold
    metrics: dict[str, Any] = {"round": round_index, "eval/prompts": len(prompts)}
    if not prompts:
        return metrics
    out_dir = ctx.round_dir(round_index)

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
    return metrics
