"""Run one short round of the tiny-model engine; launched by test_distributed.py in 1 or 2 processes.

Usage: ``python tests/distributed_engine.py RUN_DIR`` or, for two CPU processes,
``ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 tests/distributed_engine.py RUN_DIR``.
Every process writes ``RUN_DIR/rank-N.safetensors`` with its trainable weights after the run.
"""

from __future__ import annotations

import sys
from pathlib import Path

from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import make_tiny_model  # noqa: E402
from test_engine import ChecksumReranker, make_prompts  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

import larpo  # noqa: E402
from larpo.engine import Engine  # noqa: E402
from larpo.model_source import resolve_model  # noqa: E402
from larpo.plugins import registry  # noqa: E402
from larpo.spec import EvaluationSpec, LoraSpec, OptimizationSpec, RoundsSpec  # noqa: E402


def main(run_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m-instruct"))
    retriever = registry("retriever").get("hf-causal-lm").factory.from_objects(make_tiny_model(tokenizer), tokenizer)
    engine = Engine(
        retriever=retriever,
        reranker=ChecksumReranker(),
        miner=registry("miner").build("rank", {"num_negatives": 2}),
        loss=larpo.losses.get("contrastive", beta=0.5),
        prompts=make_prompts(train=4, heldout=2),
        run_dir=run_dir,
        rounds=RoundsSpec(count=1, samples_per_prompt=4, max_new_tokens=6, temperature=1.5),
        # 4 lists of up to 3 responses make steps of 3 lists and 1 list. In step 1 rank 0
        # gets two lists (two micro-batches) and rank 1 one list. Step 2 has one list, so
        # rank 1 runs the zero-weight pass.
        optimization=OptimizationSpec(lr=1e-2, epochs=2, batch_size=9, micro_batch_size=3, lora=LoraSpec(r=4, alpha=8)),
        evaluation=EvaluationSpec(pass_k=0),
        seed=11,
    )
    engine.run()
    model = engine.ctx.retriever.model
    state = {name: p.detach().contiguous() for name, p in model.named_parameters() if p.requires_grad}
    save_file(state, str(run_dir / f"rank-{engine.ctx.process_index}.safetensors"))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
