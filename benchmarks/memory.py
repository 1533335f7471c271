"""Peak memory of the optimise phase with ``reference: round`` against a reference-free run.

Each setting runs in its own spawned process on the real packaged SmolLM2-135M-Instruct
(retriever ``hf-causal-lm``, model ``smollm2-135m-instruct``, float32, CPU):

- ``round``: loss ``contrastive``, reference mode ``round``. The reference phase caches
  the reference log-probabilities on disk first; the optimise phase reads them.
- ``none``: loss ``simpo``, reference mode ``none``, no reference phase.

Both train on the same synthetic lists (random response token ids, so no sampling or
reranking is needed) with the same optimisation settings. The figure is the process's
peak resident set size (Linux ``VmHWM``) during the optimise phase: the peak is reset
through ``/proc/self/clear_refs`` just before the phase starts, so model loading and the
reference phase do not count. RSS covers every allocation, including torch's CPU
allocator, which tracemalloc does not see.

Run (about 7 minutes on 2 shared CPU cores)::

    python benchmarks/memory.py
    python benchmarks/memory.py --full-finetuning --lists 4
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lists", type=int, default=8, help="Training lists, one per prompt (default 8).")
    parser.add_argument("--list-size", type=int, default=4, help="Responses per list (default 4).")
    parser.add_argument("--response-tokens", type=int, default=64, help="Tokens per response (default 64).")
    parser.add_argument("--batch-size", type=int, default=16, help="Responses per optimiser step (default 16).")
    parser.add_argument("--micro-batch-size", type=int, default=8, help="Responses per forward pass (default 8).")
    parser.add_argument("--full-finetuning", action="store_true", help="Train every weight instead of LoRA (r 16).")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def read_status_kib(field: str) -> int:
    """Return a ``/proc/self/status`` field (VmRSS, VmHWM) in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status; this benchmark needs Linux")


def reset_peak_rss() -> None:
    """Reset VmHWM to the current RSS (Linux only)."""
    Path("/proc/self/clear_refs").write_text("5")


def synthetic_lists(args: argparse.Namespace, vocab_size: int, eos_id: int) -> tuple[list[Any], list[Any], dict]:
    import torch

    from larpo.types import Candidate, Prompt, RankedList

    generator = torch.Generator().manual_seed(args.seed)
    prompts = [Prompt(id=f"q{i}", text=f"What is {i} plus {2 * i}? Explain step by step.") for i in range(args.lists)]
    by_id = {}
    lists = []
    for prompt in prompts:
        ids = []
        for k in range(args.list_size):
            tokens = torch.randint(100, vocab_size, (args.response_tokens - 1,), generator=generator).tolist()
            cid = f"{prompt.id}/{k}"
            by_id[cid] = Candidate(cid, prompt.id, "", tokens + [eos_id], True, 0.0, 1, 1.0, reward=float(-k))
            ids.append(cid)
        lists.append(RankedList(prompt.id, ids, [float(-k) for k in range(args.list_size)]))
    return prompts, lists, by_id


def measure(setting: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run the optimise phase of one setting in this process and return its memory figures."""
    import torch

    import larpo
    from larpo.engine import Engine
    from larpo.engine.optimize import run_optimize
    from larpo.engine.reference import load_reference, run_reference
    from larpo.plugins import registry
    from larpo.spec import EvaluationSpec, LoraSpec, OptimizationSpec, ReferenceSpec, RoundsSpec
    from larpo.types import PromptSplits

    torch.manual_seed(args.seed)
    retriever = registry("retriever").build("hf-causal-lm", {"model": "smollm2-135m-instruct", "device": "cpu"})
    tokenizer = retriever.tokenizer
    prompts, lists, by_id = synthetic_lists(args, len(tokenizer), tokenizer.eos_token_id)
    loss, mode = ("contrastive", "round") if setting == "round" else ("simpo", "none")
    with tempfile.TemporaryDirectory() as run_dir:
        engine = Engine(
            retriever=retriever,
            reranker=None,  # type: ignore[arg-type]
            miner=None,  # type: ignore[arg-type]
            loss=larpo.losses.get(loss),
            prompts=PromptSplits(train=prompts, heldout=[]),
            run_dir=run_dir,
            rounds=RoundsSpec(count=1),
            optimization=OptimizationSpec(
                epochs=1,
                batch_size=args.batch_size,
                micro_batch_size=args.micro_batch_size,
                lora=None if args.full_finetuning else LoraSpec(),
            ),
            reference=ReferenceSpec(mode=mode),
            evaluation=EvaluationSpec(),
        )
        engine._open_run_dir(resume=False)
        engine._prepare_model()
        ctx = engine.ctx
        ref = None
        if ctx.uses_reference:
            run_reference(ctx, 1, lists, by_id)
            ref = load_reference(ctx, 1)

        before_kib = read_status_kib("VmRSS")
        reset_peak_rss()
        started = time.perf_counter()
        summary = run_optimize(ctx, 1, lists, by_id, ref)
        seconds = time.perf_counter() - started
        peak_kib = read_status_kib("VmHWM")
    return {
        "setting": setting,
        "loss": loss,
        "reference": mode,
        "rss_before_mib": before_kib / 1024,
        "peak_rss_mib": peak_kib / 1024,
        "growth_mib": (peak_kib - before_kib) / 1024,
        "seconds": seconds,
        "steps": summary["train/steps"],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    context = multiprocessing.get_context("spawn")
    results = []
    # One process at a time, so the two settings never compete for memory.
    for setting in ("round", "none"):
        with context.Pool(1) as pool:
            results.append(pool.apply(measure, (setting, args)))

    print(
        f"SmolLM2-135M-Instruct, {'full fine-tuning' if args.full_finetuning else 'LoRA r 16'}, "
        f"{args.lists} lists of {args.list_size} responses x {args.response_tokens} tokens, "
        f"batch {args.batch_size}, micro-batch {args.micro_batch_size}"
    )
    print("| setting | loss | RSS before MiB | peak RSS MiB | growth MiB | optimise s | steps |")
    print("|---|---|---|---|---|---|---|")
    for row in results:
        print(
            f"| reference {row['reference']} | {row['loss']} | {row['rss_before_mib']:.0f} | "
            f"{row['peak_rss_mib']:.0f} | {row['growth_mib']:.0f} | {row['seconds']:.1f} | {row['steps']:.0f} |"
        )
    with_reference, without = results
    print(f"peak RSS ratio round / none: {with_reference['peak_rss_mib'] / without['peak_rss_mib']:.3f}")
    print(f"growth ratio round / none: {with_reference['growth_mib'] / max(without['growth_mib'], 1e-9):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
