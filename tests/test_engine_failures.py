"""Failures and precision options of the optimise phase: NaN or inf stops the round, bf16, checkpointing."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_model
from test_engine import ChecksumReranker, make_prompts

import larpo
from larpo.atomic import read_json, read_jsonl
from larpo.engine import Engine
from larpo.engine.optimize import NonFiniteLossError, pack, plan_epoch, train_step
from larpo.losses import ListwiseLoss, LossOutput
from larpo.plugins import registry
from larpo.spec import EvaluationSpec, LoraSpec, OptimizationSpec, RoundsSpec
from larpo.types import Candidate, Prompt, PromptSplits, RankedList


class PoisonableLoss(ListwiseLoss):
    """The contrastive loss, made to return a NaN loss or an infinite gradient once ``poison`` is set."""

    def __init__(self) -> None:
        super().__init__(beta=0.5)
        self.inner = larpo.losses.get("contrastive", beta=0.5)
        self.poison: str | None = None

    def forward(self, **inputs) -> LossOutput:
        output = self.inner(**inputs)
        if self.poison == "loss":
            output.losses = output.losses * float("nan")
        elif self.poison == "gradient":
            # sqrt at 0: the value stays 0 but d/dx sqrt(x) at 0 is inf.
            logps = inputs["policy_logps"]
            output.losses = output.losses + torch.sqrt(logps - logps.detach()).sum(dim=1)
        return output


class PoisonAtRound:
    """A lifecycle plugin that sets the loss's ``poison`` when the given round starts."""

    def __init__(self, loss: PoisonableLoss, kind: str, round_index: int) -> None:
        self.loss = loss
        self.kind = kind
        self.round_index = round_index

    def __getattr__(self, name):
        def hook(**kwargs):
            if name == "larpo_round_start" and kwargs["round_index"] == self.round_index:
                self.loss.poison = self.kind
            return []

        return hook


def make_poisoned_engine(tokenizer, run_dir, kind: str) -> Engine:
    loss = PoisonableLoss()
    retriever = registry("retriever").get("hf-causal-lm").factory.from_objects(make_tiny_model(tokenizer), tokenizer)
    return Engine(
        retriever=retriever,
        reranker=ChecksumReranker(),
        miner=registry("miner").build("rank", {"num_negatives": 2}),
        loss=loss,
        prompts=make_prompts(train=4, heldout=2),
        run_dir=run_dir,
        rounds=RoundsSpec(count=2, samples_per_prompt=4, max_new_tokens=6, temperature=1.5),
        optimization=OptimizationSpec(lr=1e-2, epochs=1, batch_size=6, micro_batch_size=3, lora=LoraSpec(r=4, alpha=8)),
        evaluation=EvaluationSpec(pass_k=0),
        seed=3,
        hook=PoisonAtRound(loss, kind, round_index=2),
    )


def first_step_prompts(engine: Engine, round_index: int) -> tuple[list[str], list[str]]:
    """Return the prompt ids of step 1's first micro-batch and of the whole step 1, as the engine plans them."""
    ctx = engine.ctx
    lists = [RankedList.from_dict(row) for row in read_jsonl(ctx.round_dir(round_index) / "lists.jsonl")]
    sizes = [len(r.candidate_ids) for r in lists]
    generator = torch.Generator().manual_seed(ctx.phase_seed(round_index, "optimize"))
    step_rows = plan_epoch(sizes, ctx.optimization.batch_size, generator)[0]
    micro_rows = pack(step_rows, sizes, ctx.optimization.micro_batch_size)[0]
    return [lists[r].prompt_id for r in micro_rows], [lists[r].prompt_id for r in step_rows]


@pytest.mark.parametrize("kind", ["loss", "gradient"])
def test_non_finite_stops_round(tokenizer, tmp_path, kind):
    run_dir = tmp_path / "run"
    engine = make_poisoned_engine(tokenizer, run_dir, kind)
    with pytest.raises(NonFiniteLossError) as caught:
        engine.run()
    message = str(caught.value)

    micro_prompts, step_prompts = first_step_prompts(engine, 2)
    assert "at step 1" in message
    if kind == "loss":
        assert message.startswith("non-finite loss")
        assert str(sorted(micro_prompts)) in message
    else:
        assert message.startswith("non-finite gradient norm")
        assert str(step_prompts) in message
    assert "last good checkpoint is kept" in message

    # round 1's checkpoint is the last good one, and round 2 wrote none
    assert (run_dir / "round-001" / "checkpoint" / "adapter_model.safetensors").is_file()
    assert not (run_dir / "round-002" / "checkpoint").exists()
    manifest = read_json(run_dir / "manifest.json")
    assert manifest["status"] == "failed"
    assert manifest["error"] == message
    assert manifest["phases"]["1/optimize"] == "done"
    assert "2/optimize" not in manifest["phases"]
    assert [row["round"] for row in read_jsonl(run_dir / "metrics.jsonl")] == [0, 1]


def build_step_inputs(tokenizer, engine_kwargs: dict, dtype: torch.dtype = torch.float32):
    """Return an engine with its model prepared (LoRA, checkpointing) and a one-step set of lists."""
    model = make_tiny_model(tokenizer, seed=1).to(dtype)
    retriever = registry("retriever").get("hf-causal-lm").factory.from_objects(model, tokenizer)
    prompts = [Prompt(id=f"p{i}", text=f"Question number {i}?") for i in range(4)]
    engine = Engine(
        retriever=retriever,
        reranker=ChecksumReranker(),
        miner=registry("miner").build("rank", {"num_negatives": 2}),
        loss=larpo.losses.get("contrastive", beta=0.5),
        prompts=PromptSplits(train=prompts, heldout=[]),
        run_dir="unused",
        **engine_kwargs,
    )
    engine._prepare_model()
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
    ref = torch.linspace(-3.0, -1.0, 12, dtype=dtype).reshape(4, 3)
    return engine, lists, candidates, ref


def sgd_step_delta(engine, lists, candidates, ref) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Run one train_step with SGD at lr 1 and return minus the gradient per trainable parameter, and the row."""
    model = engine.ctx.retriever.model
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    before = [p.detach().clone() for p in params]
    optimizer = torch.optim.SGD(params, lr=1.0)
    model.train()
    row = train_step(engine.ctx, lists, [0, 1, 2, 3], candidates, ref, optimizer, params, step=1)
    return {n: b - p.detach() for (n, p), b in zip(named, before)}, row


@pytest.fixture()
def fresh_accelerator_state():
    """Reset accelerate's process-wide state around the test, since it fixes mixed precision once set."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    yield
    AcceleratorState._reset_state()


def test_bf16_runs_a_step_on_cpu(tokenizer, fresh_accelerator_state):
    engine, lists, candidates, ref = build_step_inputs(
        tokenizer,
        {"optimization": OptimizationSpec(batch_size=12, micro_batch_size=6, precision="bf16", lora=None)},
    )
    assert engine.ctx.accelerator.mixed_precision == "bf16"
    output_dtypes = []
    layer = engine.ctx.retriever.model.model.layers[0].mlp.down_proj
    handle = layer.register_forward_hook(lambda module, args, output: output_dtypes.append(output.dtype))
    try:
        delta, row = sgd_step_delta(engine, lists, candidates, ref)
    finally:
        handle.remove()

    assert output_dtypes and all(dtype == torch.bfloat16 for dtype in output_dtypes)
    assert torch.isfinite(torch.tensor(row["loss"]))
    assert torch.isfinite(torch.tensor(row["grad_norm"]))
    assert any(float(d.abs().max()) > 0 for d in delta.values())
    # the master weights stay float32 under autocast
    assert all(p.dtype == torch.float32 for p in engine.ctx.retriever.model.parameters())


def test_gradient_checkpointing_with_lora(tokenizer):
    settings = {"batch_size": 12, "micro_batch_size": 6, "max_grad_norm": None, "lora": LoraSpec(r=4, alpha=8)}
    plain = build_step_inputs(tokenizer, {"optimization": OptimizationSpec(**settings)}, dtype=torch.float64)
    checkpointed = build_step_inputs(
        tokenizer, {"optimization": OptimizationSpec(gradient_checkpointing=True, **settings)}, dtype=torch.float64
    )
    base = checkpointed[0].ctx.retriever.model.get_base_model()
    assert any(getattr(module, "gradient_checkpointing", False) for module in base.modules())

    plain_delta, plain_row = sgd_step_delta(*plain)
    checkpointed_delta, checkpointed_row = sgd_step_delta(*checkpointed)
    assert plain_delta.keys() == checkpointed_delta.keys()
    assert all("lora_" in name for name in plain_delta)
    # lora_B starts at zero, so step 1 moves only lora_B; it must move with checkpointing too.
    moved = [name for name, delta in checkpointed_delta.items() if float(delta.abs().max()) > 0]
    assert moved and all("lora_B" in name for name in moved)
    # Recomputing activations in float64 gives the same gradients.
    for name in plain_delta:
        assert torch.allclose(plain_delta[name], checkpointed_delta[name], atol=1e-12, rtol=0), name
    assert plain_row["loss"] == pytest.approx(checkpointed_row["loss"], abs=1e-12)
