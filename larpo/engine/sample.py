"""Sample phase: the retriever draws K responses per prompt (top-K retrieval)."""

from __future__ import annotations

from collections.abc import Sequence

from tqdm.auto import tqdm

from larpo.engine.context import RunContext
from larpo.types import Candidate, Prompt, Sample

CHUNK_PROMPTS = 8


def draw(
    ctx: RunContext,
    prompts: Sequence[Prompt],
    *,
    num_samples: int,
    temperature: float,
    max_new_tokens: int,
    seed: int,
    desc: str,
) -> list[list[Sample]]:
    """Sample in chunks with a progress bar; chunk i uses seed ``seed * 1000 + i``."""
    results: list[list[Sample]] = []
    bar = tqdm(total=len(prompts), desc=desc, unit="prompt", disable=not ctx.is_main_process, leave=False)
    for index, start in enumerate(range(0, len(prompts), CHUNK_PROMPTS)):
        chunk = prompts[start : start + CHUNK_PROMPTS]
        results.extend(
            ctx.retriever.sample(
                chunk,
                num_samples=num_samples,
                temperature=temperature,
                top_p=ctx.rounds.top_p if temperature > 0 else 1.0,
                max_new_tokens=max_new_tokens,
                seed=seed * 1000 + index,
            )
        )
        bar.update(len(chunk))
    bar.close()
    return results


def run_sample(ctx: RunContext, round_index: int) -> list[Candidate]:
    """Draw this round's candidates for every training prompt."""
    temperature = ctx.rounds.temperature_at(round_index)
    samples = draw(
        ctx,
        ctx.prompts.train,
        num_samples=ctx.rounds.samples_per_prompt,
        temperature=temperature,
        max_new_tokens=ctx.rounds.max_new_tokens,
        seed=ctx.phase_seed(round_index, "sample"),
        desc=f"round {round_index} sample",
    )
    candidates = []
    for prompt, prompt_samples in zip(ctx.prompts.train, samples):
        for k, sample in enumerate(prompt_samples):
            candidates.append(
                Candidate(
                    id=f"{prompt.id}/r{round_index}/{k}",
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
