"""Two CPU processes through ``accelerate launch`` train to the same weights as one process."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from larpo.atomic import read_jsonl

SCRIPT = Path(__file__).with_name("distributed_engine.py")

# Tolerance of the weight comparison, in float32. The two runs see the same lists and
# differ only in the order of additions (one accumulated sum against two partial sums
# added by all-reduce), so gradients differ by float32 rounding (about 1e-7 relative).
# AdamW turns each gradient into an update of about lr (1e-2) per step, so after 4 steps
# the weights may differ by a few float32 ulps (3.7e-8 measured). 1e-6 leaves room for
# that. It is also 10,000 times smaller than one update, so a lost or doubled list fails.
WEIGHT_ATOL = 1e-6
# AdamW hides a constant gradient scale, so the step log's gradient norms and losses are
# compared as well: a wrong loss normalisation changes them by a factor.
LOG_RTOL = 1e-5


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(run_dir: Path, processes: int) -> subprocess.Popen:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    if processes == 1:
        command = [sys.executable, str(SCRIPT), str(run_dir)]
    else:
        env["ACCELERATE_USE_CPU"] = "true"  # gloo on CPU; accelerate otherwise looks for GPUs
        accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
        command = [
            accelerate,
            "launch",
            "--multi_gpu",
            "--num_processes",
            str(processes),
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_ip",
            "127.0.0.1",
            "--main_process_port",
            str(free_port()),
            str(SCRIPT),
            str(run_dir),
        ]
    log = open(run_dir.with_suffix(".log"), "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def test_two_processes_match_one(tmp_path):
    single_dir, double_dir = tmp_path / "one", tmp_path / "two"
    runs = {single_dir: launch(single_dir, 1), double_dir: launch(double_dir, 2)}
    for run_dir, process in runs.items():
        try:
            code = process.wait(timeout=240)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail(f"{run_dir.name}: timed out after 240 s; log:\n{run_dir.with_suffix('.log').read_text()}")
        assert code == 0, run_dir.with_suffix(".log").read_text()[-4000:]

    # the main process sampled the same candidates in both runs
    candidates = "round-001/candidates.jsonl"
    assert (single_dir / candidates).read_text() == (double_dir / candidates).read_text()

    # every rank ends with the same weights (DDP keeps the replicas equal)
    rank0, rank1 = load_file(str(double_dir / "rank-0.safetensors")), load_file(str(double_dir / "rank-1.safetensors"))
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name

    # two processes reach one process's weights
    single = load_file(str(single_dir / "rank-0.safetensors"))
    assert single.keys() == rank0.keys()
    assert any("lora_B" in name and float(w.abs().max()) > 0 for name, w in single.items())
    for name in single:
        difference = float((single[name] - rank0[name]).abs().max())
        assert difference <= WEIGHT_ATOL, f"{name}: max difference {difference:.3g}"

    # and the same step log: losses and gradient norms of the whole step
    single_log = list(read_jsonl(single_dir / "round-001" / "train_log.jsonl"))
    double_log = list(read_jsonl(double_dir / "round-001" / "train_log.jsonl"))
    assert [row["lists"] for row in single_log] == [row["lists"] for row in double_log] == [3.0, 1.0, 3.0, 1.0]
    for single_row, double_row in zip(single_log, double_log):
        step = single_row["step"]
        assert double_row["loss"] == pytest.approx(single_row["loss"], rel=LOG_RTOL), step
        assert double_row["grad_norm"] == pytest.approx(single_row["grad_norm"], rel=LOG_RTOL), step
