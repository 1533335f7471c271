"""Benchmark larpo's ``faiss`` miner against sentence-transformers' ``mine_hard_negatives``.

Both sides get the same precomputed synthetic embeddings, so the figures cover
indexing, search and selection, not the embedding model. Each response text maps to
one unit vector: responses to one prompt scatter around that prompt's random centre,
so a response's nearest neighbours are mostly responses to the same prompt, as with
real sampled answers. larpo receives the vectors through an injected embedder.
sentence-transformers reads them from embedding cache files that this script writes
in the format that ``mine_hard_negatives(cache_folder=...)`` loads.

Equivalent settings: one positive per prompt (the best-rewarded response), three
negatives, the top-ranked neighbours (``sampling_strategy="top"``), and candidates
with cosine above the near-duplicate threshold removed (larpo
``near_duplicate_threshold``, sentence-transformers ``max_score``). The anchor of
each sentence-transformers row is the positive's text, so both search near the positive.

Each side runs in its own spawned process, which reports its wall time and peak
resident memory. Then the script measures recall@10 of the approximate indexes
against IndexFlatIP, and the time of larpo's miner on ``--large`` embeddings with
cross-prompt negatives on, whose prompt index is then approximate.

Run (about 6 minutes on 2 CPU cores)::

    python benchmarks/mining.py
    python benchmarks/mining.py --responses 20000 --large 0   # quick run

``sentence-transformers`` needs the ``datasets`` package here (``pip install datasets``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--responses", type=int, default=100_000, help="Responses compared (default 100000).")
    parser.add_argument("--per-prompt", type=int, default=8, help="Responses per prompt (default 8).")
    parser.add_argument("--dim", type=int, default=384, help="Embedding dimension (384, as all-MiniLM-L6-v2).")
    parser.add_argument("--noise", type=float, default=0.8, help="Spread of responses around their prompt's centre.")
    parser.add_argument("--num-negatives", type=int, default=3, help="Negatives per positive (default 3).")
    parser.add_argument("--threshold", type=float, default=0.95, help="Near-duplicate cosine threshold.")
    parser.add_argument(
        "--large", type=int, default=1_000_000, help="Embeddings for the approximate-index timing; 0 skips it."
    )
    parser.add_argument("--recall-queries", type=int, default=2000, help="Queries for the recall@10 measurement.")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def make_round(responses: int, per_prompt: int, dim: int, noise: float, seed: int) -> dict[str, Any]:
    """Synthetic unit embeddings, texts and distinct per-prompt rewards."""
    rng = np.random.default_rng(seed)
    num_prompts = responses // per_prompt
    centres = rng.standard_normal((num_prompts, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors = np.repeat(centres, per_prompt, axis=0)
    vectors += noise * rng.standard_normal(vectors.shape, dtype=np.float32) / np.sqrt(dim)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rewards = np.concatenate([rng.permutation(per_prompt) for _ in range(num_prompts)]).astype(float)
    prompt_vectors = centres + 0.3 * rng.standard_normal(centres.shape, dtype=np.float32) / np.sqrt(dim)
    return {"vectors": vectors, "rewards": rewards, "prompt_vectors": prompt_vectors, "per_prompt": per_prompt}


def response_text(row: int, per_prompt: int) -> str:
    return f"prompt {row // per_prompt} response {row % per_prompt}"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def current_rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


# -- larpo side ---------------------------------------------------------------------


def build_larpo_inputs(data: dict[str, Any]):
    from larpo.types import Candidate, Prompt

    per_prompt = data["per_prompt"]
    vectors, rewards = data["vectors"], data["rewards"]
    table: dict[str, np.ndarray] = {}
    pools: dict[str, list[Candidate]] = {}
    prompts: dict[str, Prompt] = {}
    for row in range(len(vectors)):
        prompt_id = f"q{row // per_prompt}"
        text = response_text(row, per_prompt)
        table[text] = vectors[row]
        pools.setdefault(prompt_id, []).append(
            Candidate(
                id=f"{prompt_id}/r1/{row % per_prompt}",
                prompt_id=prompt_id,
                text=text,
                token_ids=[],
                finished=True,
                behaviour_logps=0.0,
                round_index=1,
                temperature=1.0,
                reward=float(rewards[row]),
            )
        )
    for p, vector in enumerate(data["prompt_vectors"]):
        prompts[f"q{p}"] = Prompt(id=f"q{p}", text=f"prompt text {p}")
        table[f"prompt text {p}"] = vector
    return pools, prompts, table


def run_larpo(path: str, num_negatives: int, threshold: float, cross_prompt: int) -> dict[str, Any]:
    from larpo_plugins.faiss_miner import FaissMiner, FaissMinerParams

    data = dict(np.load(path))
    data["per_prompt"] = int(data["per_prompt"])
    pools, prompts, table = build_larpo_inputs(data)

    def embed(texts: list[str]) -> np.ndarray:
        return np.stack([table[t] for t in texts])

    params = FaissMinerParams(
        num_negatives=num_negatives,
        near_duplicate_threshold=threshold,
        cross_prompt_negatives=cross_prompt,
        batch_size=65536,
    )
    miner = FaissMiner(params, embedder=embed, embedder_name="synthetic")
    before = current_rss_mib()
    started = time.perf_counter()
    result = miner.mine(pools, prompts=prompts if cross_prompt else None)
    seconds = time.perf_counter() - started
    per_prompt = data["per_prompt"]
    negatives = {}
    for ranked in result.lists:
        prompt_index = int(ranked.prompt_id[1:])
        slot = [int(cid.rsplit("/", 1)[1]) for cid in ranked.candidate_ids]
        texts = [response_text(prompt_index * per_prompt + s, per_prompt) for s in slot]
        negatives[texts[0]] = set(texts[1 : 1 + num_negatives])
    return {
        "seconds": seconds,
        "peak_mib": peak_rss_mib(),
        "rss_before_mib": before,
        "negatives": negatives,
        "report": result.report,
    }


# -- sentence-transformers side -----------------------------------------------------


def run_sentence_transformers(path: str, num_negatives: int, threshold: float, cache: str) -> dict[str, Any]:
    from datasets import Dataset
    from larpo_plugins.embedding_index import packaged_model_path
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    data = dict(np.load(path))
    per_prompt = int(data["per_prompt"])
    vectors, rewards = data["vectors"], data["rewards"]
    corpus = [response_text(row, per_prompt) for row in range(len(vectors))]
    best = [
        p * per_prompt + int(np.argmax(rewards[p * per_prompt : (p + 1) * per_prompt]))
        for p in range(len(vectors) // per_prompt)
    ]
    anchors = [corpus[row] for row in best]
    model = SentenceTransformer(packaged_model_path(), device="cpu")

    # the cache file names follow sentence-transformers' own hashing, so it loads these vectors
    model_name = model.model_card_data.base_model or ""
    for kind, texts, matrix in (("query", anchors, vectors[best]), ("corpus", corpus, vectors)):
        digest = hashlib.sha256(repr((model_name, None, None, texts)).encode(), usedforsecurity=False).hexdigest()
        np.save(Path(cache) / f"{kind}_embeddings_{digest}.npy", matrix)

    dataset = Dataset.from_dict({"anchor": anchors, "positive": anchors})
    before = current_rss_mib()
    started = time.perf_counter()
    mined = mine_hard_negatives(
        dataset,
        model,
        corpus=corpus,
        num_negatives=num_negatives,
        sampling_strategy="top",
        max_score=threshold,
        use_faiss=True,
        cache_folder=cache,
        verbose=False,
    )
    seconds = time.perf_counter() - started
    negatives: dict[str, set[str]] = {}
    for anchor, negative in zip(mined["anchor"], mined["negative"]):
        negatives.setdefault(anchor, set()).add(negative)
    return {"seconds": seconds, "peak_mib": peak_rss_mib(), "rss_before_mib": before, "negatives": negatives}


def in_fresh_process(function, *args):
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(function, *args).result()


# -- recall of the approximate indexes -----------------------------------------------


def measure_recall(vectors: np.ndarray, queries: int, seed: int) -> list[dict[str, Any]]:
    """Recall@10 of HNSW and IVF (larpo's default settings) against IndexFlatIP."""
    from larpo_plugins.embedding_index import VectorIndex
    from larpo_plugins.faiss_miner import FaissMinerParams

    rng = np.random.default_rng(seed)
    query = vectors[rng.choice(len(vectors), size=min(queries, len(vectors)), replace=False)]
    exact = VectorIndex(vectors, FaissMinerParams(exact_threshold=len(vectors) + 1)).search(query, 10)
    rows = []
    for index_type in ("hnsw", "ivf"):
        started = time.perf_counter()
        index = VectorIndex(vectors, FaissMinerParams(exact_threshold=0, index_type=index_type))
        built = time.perf_counter() - started
        started = time.perf_counter()
        found = index.search(query, 10)
        searched = time.perf_counter() - started
        hits = sum(len({r for r, _ in a} & {r for r, _ in b}) for a, b in zip(exact, found))
        rows.append({"index": index_type, "recall": hits / (10 * len(query)), "build_s": built, "search_s": searched})
    return rows


# -- report -------------------------------------------------------------------------


def overlap(larpo: dict[str, set[str]], reference: dict[str, set[str]], per_prompt: int) -> dict[str, float]:
    pairs_larpo = {(a, n) for a, ns in larpo.items() for n in ns}
    pairs_reference = {(a, n) for a, ns in reference.items() for n in ns}
    shared = len(pairs_larpo & pairs_reference)

    def prompt_of(text: str) -> str:
        return text.split(" response ")[0]

    cross = sum(1 for a, n in pairs_reference if prompt_of(a) != prompt_of(n))
    return {
        "larpo_pairs": len(pairs_larpo),
        "st_pairs": len(pairs_reference),
        "shared_pairs": shared,
        "jaccard": shared / max(len(pairs_larpo | pairs_reference), 1),
        "st_in_larpo": shared / max(len(pairs_reference), 1),
        "st_cross_prompt": cross,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"python {sys.version.split()[0]}, {multiprocessing.cpu_count()} CPU cores")
    data = make_round(args.responses, args.per_prompt, args.dim, args.noise, args.seed)
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "round.npz")
        np.savez(path, **data)
        larpo = in_fresh_process(run_larpo, path, args.num_negatives, args.threshold, 0)
        cache = Path(folder) / "st-cache"
        cache.mkdir()
        reference = in_fresh_process(run_sentence_transformers, path, args.num_negatives, args.threshold, str(cache))

    responses = len(data["vectors"])
    print(
        f"\n{responses} responses, {responses // args.per_prompt} prompts, "
        f"dim {args.dim}, {args.num_negatives} negatives"
    )
    print(f"{'miner':<24}{'wall s':>10}{'peak RSS MiB':>15}{'RSS growth MiB':>16}")
    for name, side in (("larpo faiss", larpo), ("st mine_hard_negatives", reference)):
        growth = side["peak_mib"] - side["rss_before_mib"]
        print(f"{name:<24}{side['seconds']:>10.2f}{side['peak_mib']:>15.0f}{growth:>16.0f}")
    print(f"wall-time ratio larpo / st: {larpo['seconds'] / reference['seconds']:.2f}")
    print(f"peak-memory ratio larpo / st: {larpo['peak_mib'] / reference['peak_mib']:.2f}")
    growth_larpo = larpo["peak_mib"] - larpo["rss_before_mib"]
    growth_reference = reference["peak_mib"] - reference["rss_before_mib"]
    print(f"RSS-growth ratio larpo / st: {growth_larpo / max(growth_reference, 1e-9):.2f}")
    stats = overlap(larpo["negatives"], reference["negatives"], args.per_prompt)
    print(
        f"negative pairs: larpo {stats['larpo_pairs']}, st {stats['st_pairs']}, shared {stats['shared_pairs']}; "
        f"jaccard {stats['jaccard']:.3f}; share of st pairs also mined by larpo {stats['st_in_larpo']:.3f}; "
        f"st pairs from another prompt {stats['st_cross_prompt']}"
    )
    print(f"larpo report: {larpo['report']}")

    print(f"\nrecall@10 against IndexFlatIP on {responses} vectors, {args.recall_queries} queries")
    for row in measure_recall(data["vectors"], args.recall_queries, args.seed):
        print(
            f"  {row['index']:<5} recall {row['recall']:.4f}  "
            f"build {row['build_s']:.1f} s  search {row['search_s']:.2f} s"
        )

    if args.large:
        del data
        large = make_round(args.large, args.per_prompt, args.dim, args.noise, args.seed + 1)
        with tempfile.TemporaryDirectory() as folder:
            path = str(Path(folder) / "large.npz")
            np.savez(path, **large)
            del large
            result = in_fresh_process(run_larpo, path, args.num_negatives, args.threshold, 1)
        from larpo_plugins.faiss_miner import FaissMinerParams

        prompts = args.large // args.per_prompt
        kind = "HNSW" if prompts >= FaissMinerParams().exact_threshold else "IndexFlatIP"
        print(
            f"\nlarpo faiss miner, {args.large} embeddings ({prompts} prompts), cross_prompt_negatives 1 "
            f"({kind} prompt index): {result['seconds']:.1f} s, peak RSS {result['peak_mib']:.0f} MiB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
