"""Training cost of larpo's contrastive loss on lists of K against TRL's DPOTrainer on pairs.

Both sides train the packaged SmolLM2-135M-Instruct (``smollm2-135m-instruct``) in float32
on CPU, with full fine-tuning, on the same synthetic preferences: each prompt has K
responses of a fixed token length ranked best first. larpo trains on the list of K with
the ``contrastive`` loss (reference mode ``round``). TRL trains on the same preferences as
K - 1 pairs per prompt (the best response against each other one) with its default
sigmoid DPO loss, in two settings:

- ``trl-held``: TRL loads and holds a reference model next to the policy.
- ``trl-precomputed``: ``precompute_ref_log_probs=True``, so TRL scores the reference
  log-probabilities once before training and holds no reference model.

Each setting runs in its own spawned process, one after the other. The timed span covers
the reference computation and every optimiser step: larpo's reference and optimise phases,
and TRL's trainer construction (where it precomputes) plus ``train()``. Peak memory is the
process's peak resident set size (Linux ``VmHWM``), reset through ``/proc/self/clear_refs``
after the model is loaded, so it covers the reference model, optimiser state and
activations but not the policy's own weights loading.

TRL is not a larpo requirement; install it first (tested with trl 1.16.0, torch 2.13.0,
transformers 5.25.0)::

    pip install trl==1.16.0
    python benchmarks/train_step.py
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from memory import read_status_kib, reset_peak_rss  # noqa: E402

SETTINGS = ("larpo", "trl-held", "trl-precomputed")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=4, help="Prompts, one list of K per prompt (default 4).")
    parser.add_argument("--list-size", type=int, default=4, help="Responses per prompt, K (default 4).")
    parser.add_argument("--response-tokens", type=int, default=32, help="Words per response text (default 32).")
    parser.add_argument(
        "--prompts-per-step", type=int, default=2, help="Prompts per optimiser step on both sides (default 2)."
    )
    parser.add_argument("--beta", type=float, default=0.1, help="Loss temperature beta on both sides (default 0.1).")
    parser.add_argument("--lr", type=float, default=1e-6, help="Learning rate on both sides (default 1e-6).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
    return parser.parse_args(argv)


def synthetic_preferences(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Build prompts with K response texts each, best first; every response has the same number of words."""
    import random

    rng = random.Random(args.seed)
    words = ["alpha", "beta", "gamma", "delta", "seven", "nine", "sum", "answer", "step", "first", "then", "so"]
    rows = []
    for i in range(args.prompts):
        responses = [" ".join(rng.choice(words) for _ in range(args.response_tokens)) for _ in range(args.list_size)]
        rows.append({"prompt": f"What is {i} plus {2 * i}? Explain step by step.", "responses": responses})
    return rows


def run_larpo(args: argparse.Namespace, rows: list[dict[str, Any]]) -> dict[str, Any]:
    import larpo
    from larpo.engine import Engine
    from larpo.engine.optimize import run_optimize
    from larpo.engine.reference import load_reference, run_reference
    from larpo.plugins import registry
    from larpo.spec import EvaluationSpec, OptimizationSpec, ReferenceSpec, RoundsSpec
    from larpo.types import Candidate, Prompt, PromptSplits, RankedList

    retriever = registry("retriever").build("hf-causal-lm", {"model": "smollm2-135m-instruct", "device": "cpu"})
    tokenizer = retriever.tokenizer
    prompts, lists, by_id = [], [], {}
    for i, row in enumerate(rows):
        prompt = Prompt(id=f"q{i}", text=row["prompt"])
        prompts.append(prompt)
        ids = []
        for k, text in enumerate(row["responses"]):
            tokens = tokenizer(text, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
            cid = f"{prompt.id}/{k}"
            by_id[cid] = Candidate(cid, prompt.id, text, tokens, True, 0.0, 1, 1.0, reward=float(-k))
            ids.append(cid)
        lists.append(RankedList(prompt.id, ids, [float(-k) for k in range(len(ids))]))

    responses_per_step = args.prompts_per_step * args.list_size
    with tempfile.TemporaryDirectory() as run_dir:
        engine = Engine(
            retriever=retriever,
            reranker=None,  # type: ignore[arg-type]
            miner=None,  # type: ignore[arg-type]
            loss=larpo.losses.get("contrastive", beta=args.beta),
            prompts=PromptSplits(train=prompts, heldout=[]),
            run_dir=run_dir,
            rounds=RoundsSpec(count=1),
            optimization=OptimizationSpec(
                lr=args.lr, epochs=1, batch_size=responses_per_step, micro_batch_size=responses_per_step, lora=None
            ),
            reference=ReferenceSpec(mode="round"),
            evaluation=EvaluationSpec(),
        )
        engine._open_run_dir(resume=False)
        engine._prepare_model()
        ctx = engine.ctx
        reset_peak_rss()
        started = time.perf_counter()
        run_reference(ctx, 1, lists, by_id)
        summary = run_optimize(ctx, 1, lists, by_id, load_reference(ctx, 1))
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "peak_kib": read_status_kib("VmHWM"), "steps": summary["train/steps"]}


def run_trl(args: argparse.Namespace, rows: list[dict[str, Any]], precompute: bool) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from larpo.model_source import resolve_model

    folder = resolve_model("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    pairs = {"prompt": [], "chosen": [], "rejected": []}
    for row in rows:
        best, *others = row["responses"]
        for other in others:
            pairs["prompt"].append([{"role": "user", "content": row["prompt"]}])
            pairs["chosen"].append([{"role": "assistant", "content": best}])
            pairs["rejected"].append([{"role": "assistant", "content": other}])
    pairs_per_step = args.prompts_per_step * (args.list_size - 1)
    with tempfile.TemporaryDirectory() as output_dir:
        config = DPOConfig(
            output_dir=output_dir,
            per_device_train_batch_size=pairs_per_step,
            num_train_epochs=1,
            learning_rate=args.lr,
            beta=args.beta,
            precompute_ref_log_probs=precompute,
            bf16=False,
            fp16=False,
            use_cpu=True,
            report_to="none",
            logging_steps=1,
            save_strategy="no",
            seed=args.seed,
            dataloader_num_workers=0,
        )
        reset_peak_rss()
        started = time.perf_counter()
        trainer = DPOTrainer(
            model=model, args=config, train_dataset=Dataset.from_dict(pairs), processing_class=tokenizer
        )
        result = trainer.train()
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "peak_kib": read_status_kib("VmHWM"), "steps": result.global_step}


def measure(setting: str, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.manual_seed(args.seed)
    rows = synthetic_preferences(args)
    if setting == "larpo":
        result = run_larpo(args, rows)
    else:
        result = run_trl(args, rows, precompute=setting == "trl-precomputed")
    result["setting"] = setting
    result["seconds_per_prompt"] = result["seconds"] / args.prompts
    return result


def _child(setting: str, args: argparse.Namespace, queue: Any) -> None:
    queue.put(measure(setting, args))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    context = multiprocessing.get_context("spawn")
    results = {}
    for setting in args.settings:
        queue = context.Queue()
        process = context.Process(target=_child, args=(setting, args, queue))
        process.start()
        results[setting] = queue.get()
        process.join()
    print(
        f"{args.prompts} prompts, K={args.list_size}, {args.response_tokens} words per response, "
        f"{args.prompts_per_step} prompts per step, fp32, full fine-tuning"
    )
    print(f"{'setting':<16} {'steps':>5} {'seconds':>8} {'s/prompt':>9} {'peak RSS MiB':>13}")
    for name, result in results.items():
        print(
            f"{name:<16} {int(result['steps']):>5} {result['seconds']:>8.1f} "
            f"{result['seconds_per_prompt']:>9.2f} {result['peak_kib'] / 1024:>13.0f}"
        )
    if "larpo" in results:
        base = results["larpo"]
        for name in ("trl-held", "trl-precomputed"):
            if name in results:
                other = results[name]
                print(
                    f"larpo / {name}: time per prompt {base['seconds_per_prompt'] / other['seconds_per_prompt']:.2f}, "
                    f"peak RSS {base['peak_kib'] / other['peak_kib']:.2f}"
                )


if __name__ == "__main__":
    main()
