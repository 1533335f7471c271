"""The optimise phase: packing lists into steps and exact gradient accumulation."""

from __future__ import annotations

import torch
from conftest import make_tiny_model

import larpo
from larpo.engine.context import RunContext
from larpo.engine.optimize import pack, train_step
from larpo.plugins import registry
from larpo.spec import EvaluationSpec, OptimizationSpec, ReferenceSpec, RoundsSpec
from larpo.types import Candidate, Prompt, PromptSplits, RankedList


def test_pack_keeps_whole_lists():
    # Sizes 3, 3, 2, 4 with a limit of 6: [0, 1] (6), [2, 3] (6).
    assert pack([0, 1, 2, 3], [3, 3, 2, 4], 6) == [[0, 1], [2, 3]]
    # A list larger than the limit still forms a group of its own.
    assert pack([0, 1], [8, 1], 6) == [[0], [1]]
    assert pack([], [], 6) == []


def build_context(tokenizer, micro_batch_size: int):
    from accelerate import Accelerator

    model = make_tiny_model(tokenizer, seed=1).double()
    retriever = registry("retriever").get("hf-causal-lm").factory.from_objects(model, tokenizer)
    prompts = [Prompt(id=f"p{i}", text=f"Question number {i}?") for i in range(4)]
    candidates = {}
    lists = []
    for i, prompt in enumerate(prompts):
        ids = []
        for k in range(3):
            cid = f"p{i}/{k}"
            tokens = [100 + 7 * i + k, 200 + k, 300 + i, tokenizer.eos_token_id][: 2 + (i + k) % 3]
            candidates[cid] = Candidate(cid, prompt.id, "", tokens, True, 0.0, 1, 1.0, reward=float(2 - k))
            ids.append(cid)
        lists.append(RankedList(prompt.id, ids, [2.0, 1.0, 0.0]))
    ctx = RunContext(
        retriever=retriever,
        reranker=None,  # type: ignore[arg-type]
        miner=None,  # type: ignore[arg-type]
        loss=larpo.losses.get("contrastive", beta=0.5),
        prompts=PromptSplits(train=prompts, heldout=[]),
        rounds=RoundsSpec(),
        optimization=OptimizationSpec(batch_size=12, micro_batch_size=micro_batch_size, max_grad_norm=None, lora=None),
        reference=ReferenceSpec(),
        evaluation=EvaluationSpec(),
        run_dir="unused",
        accelerator=Accelerator(cpu=True),
    )
    ref = torch.linspace(-3.0, -1.0, 12, dtype=torch.float64).reshape(4, 3)
    return ctx, lists, candidates, ref


def gradients_after_step(tokenizer, micro_batch_size: int) -> dict[str, torch.Tensor]:
    ctx, lists, candidates, ref = build_context(tokenizer, micro_batch_size)
    params = [p for p in ctx.retriever.model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    # Plain SGD with lr 1: the parameter change is exactly minus the accumulated gradient.
    optimizer = torch.optim.SGD(params, lr=1.0)
    train_step(ctx, lists, [0, 1, 2, 3], candidates, ref, optimizer, params, step=1)
    names = [n for n, p in ctx.retriever.model.named_parameters() if p.requires_grad]
    return {n: b - p.detach() for n, b, p in zip(names, before, params)}


def test_accumulation_equals_one_batch(tokenizer):
    one_batch = gradients_after_step(tokenizer, micro_batch_size=12)
    four_micro = gradients_after_step(tokenizer, micro_batch_size=3)
    assert one_batch.keys() == four_micro.keys()
    assert any(float(g.abs().max()) > 0 for g in one_batch.values())
    for name in one_batch:
        assert torch.allclose(one_batch[name], four_micro[name], atol=1e-10, rtol=0), name
