"""larpo's sample phase against plain batched ``model.generate`` with the same settings.

Both sides use one loaded packaged SmolLM2-135M-Instruct (``smollm2-135m-instruct``,
float32, CPU) and the same prompts, chat template, left padding, batch of prompts and
sampling configuration (the retriever's own ``generation_config``). The larpo side calls
the ``hf-causal-lm`` retriever's ``sample``, which also returns the per-step logits and
turns them into each response's behaviour log-probability and decoded text. The plain
side calls ``model.generate`` without logits, seeded as the retriever seeds each batch,
so both sides draw the same tokens. A short warm-up generate runs before either side is
timed. Tokens per second counts generated tokens up to and including the first EOS.

Run (about a minute on 2 shared CPU cores)::

    python benchmarks/sampling.py
    python benchmarks/sampling.py --prompts 16 --samples 8 --max-new-tokens 64
"""

from __future__ import annotations

import argparse
import time
from typing import Any


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=8, help="Prompts (default 8).")
    parser.add_argument("--samples", type=int, default=4, help="Responses per prompt, K (default 4).")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="Maximum new tokens (default 32).")
    parser.add_argument("--batch-size", type=int, default=8, help="Prompts per generate call (default 8).")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def generated_tokens(rows: list[list[int]], eos: set[int]) -> int:
    """Count each row's tokens up to and including its first EOS (all of them when it has none)."""
    total = 0
    for tokens in rows:
        end = next((i for i, token in enumerate(tokens) if token in eos), None)
        total += len(tokens) if end is None else end + 1
    return total


def plain_generate(retriever: Any, prompts: list[Any], args: argparse.Namespace) -> list[list[int]]:
    """Sample with ``model.generate`` only: same batches, padding, seeds and settings as the retriever."""
    import torch

    config = retriever.generation_config(
        num_samples=args.samples, temperature=args.temperature, top_p=1.0, max_new_tokens=args.max_new_tokens
    )
    config.output_logits = False
    config.return_dict_in_generate = False
    pad = retriever.tokenizer.pad_token_id
    rows: list[list[int]] = []
    with torch.no_grad():
        for batch_index, start in enumerate(range(0, len(prompts), args.batch_size)):
            encoded = [retriever.prompt_ids(prompt) for prompt in prompts[start : start + args.batch_size]]
            width = max(len(ids) for ids in encoded)
            input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in encoded])  # (P, T) left-padded
            attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded])
            torch.manual_seed(args.seed * 1_000_003 + batch_index)
            output = retriever.model.generate(input_ids=input_ids, attention_mask=attention, generation_config=config)
            rows.extend(output[:, width:].tolist())  # (P * S, L)
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)

    from larpo.plugins import registry
    from larpo.types import Prompt

    retriever = registry("retriever").build(
        "hf-causal-lm",
        {"model": "smollm2-135m-instruct", "device": "cpu", "generation_batch_size": args.batch_size},
    )
    retriever.model.eval()
    prompts = [Prompt(id=f"q{i}", text=f"What is {i} plus {2 * i}? Answer briefly.") for i in range(args.prompts)]
    eos = retriever.eos_ids

    warm_up = argparse.Namespace(**{**vars(args), "prompts": 1, "max_new_tokens": 4})
    plain_generate(retriever, prompts[:1], warm_up)

    started = time.perf_counter()
    samples = retriever.sample(
        prompts,
        num_samples=args.samples,
        temperature=args.temperature,
        top_p=1.0,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    )
    larpo_seconds = time.perf_counter() - started
    larpo_tokens = sum(len(sample.token_ids) for group in samples for sample in group)

    started = time.perf_counter()
    rows = plain_generate(retriever, prompts, args)
    plain_seconds = time.perf_counter() - started
    plain_tokens = generated_tokens(rows, eos)

    responses = args.prompts * args.samples
    print(
        f"{args.prompts} prompts x {args.samples} samples, max_new_tokens {args.max_new_tokens}, "
        f"batch {args.batch_size} prompts, temperature {args.temperature}, float32 CPU"
    )
    print(f"{'side':<16} {'seconds':>8} {'s/response':>11} {'tokens':>7} {'tokens/s':>9}")
    for name, seconds, tokens in (
        ("larpo sample", larpo_seconds, larpo_tokens),
        ("model.generate", plain_seconds, plain_tokens),
    ):
        print(f"{name:<16} {seconds:>8.2f} {seconds / responses:>11.3f} {tokens:>7} {tokens / seconds:>9.1f}")
    print(
        f"larpo / generate: time per response {larpo_seconds / plain_seconds:.2f}, "
        f"tokens per second {(larpo_tokens / larpo_seconds) / (plain_tokens / plain_seconds):.2f}"
    )
    print(f"same generated tokens on both sides: {larpo_tokens == plain_tokens}")


if __name__ == "__main__":
    main()
