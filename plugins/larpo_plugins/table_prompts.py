"""Prompt sources ``jsonl`` and ``hf-dataset``: prompts read from a table of rows.

``jsonl`` reads a JSONL or Parquet file and ``hf-dataset`` reads a ``datasets`` dataset
from a local folder (``load_from_disk``) or local data files (``load_dataset``). Both
take the prompt text from one column, an optional reference answer from another
(stored in the prompt's metadata under ``reference_key``), and keep every other column
as metadata. Splits come from a split column or named split when one is given, else
from a seeded shuffle cut into held-out and train sets.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from larpo import hookimpl
from larpo.registry import StrictParams
from larpo.types import Prompt, PromptSplits

logger = logging.getLogger(__name__)


class TableColumnsParams(StrictParams):
    prompt_column: str = Field("prompt", description="Column with the user message.")
    reference_column: str | None = Field(None, description="Column with a reference answer; null means none.")
    reference_key: str = Field("answer", description="Prompt metadata key that receives the reference answer.")
    id_column: str | None = Field(None, description="Column with a unique prompt id; null numbers the rows.")
    train_size: int | None = Field(None, ge=1, description="Training prompts; null takes every remaining row.")
    heldout_size: int = Field(16, ge=0, description="Held-out prompts, disjoint from training.")
    seed: int = Field(0, description="Seed of the shuffle that chooses the prompts of each split.")


def rows_to_prompts(rows: Sequence[Mapping[str, Any]], params: TableColumnsParams, source: str) -> list[Prompt]:
    """Turn table rows into prompts, checking the prompt column and id uniqueness."""
    prompts: list[Prompt] = []
    seen: set[str] = set()
    for index, row in enumerate(rows):
        text = row.get(params.prompt_column)
        if not isinstance(text, str) or not text.strip():
            raise ValueError(
                f"{source} row {index}: column {params.prompt_column!r} is missing or not a non-empty string "
                f"(columns: {', '.join(map(str, row))}); set prompt_column"
            )
        prompt_id = str(row[params.id_column]) if params.id_column else f"{source}-{index}"
        if prompt_id in seen:
            raise ValueError(f"{source} row {index}: duplicate prompt id {prompt_id!r} in column {params.id_column!r}")
        seen.add(prompt_id)
        metadata = {str(key): value for key, value in row.items() if key != params.prompt_column}
        if params.reference_column is not None:
            if params.reference_column not in row:
                raise ValueError(f"{source} row {index}: reference column {params.reference_column!r} is missing")
            reference = metadata.pop(params.reference_column)
            if reference is not None:
                metadata[params.reference_key] = reference
        prompts.append(Prompt(id=prompt_id, text=text, metadata=metadata))
    return prompts


def sample_split(prompts: list[Prompt], size: int | None, seed: int, name: str, source: str) -> list[Prompt]:
    """Return ``size`` prompts chosen by a seeded shuffle (every prompt when size is None)."""
    if size is not None and size > len(prompts):
        raise ValueError(f"{source}: {name} split has {len(prompts)} prompts, fewer than {name}_size = {size}")
    shuffled = list(prompts)
    random.Random(seed).shuffle(shuffled)
    return shuffled if size is None else shuffled[:size]


def shuffle_split(prompts: list[Prompt], params: TableColumnsParams, source: str) -> PromptSplits:
    """Split one list into held-out and train prompts with a seeded shuffle."""
    wanted = params.heldout_size + (params.train_size or 1)
    if wanted > len(prompts):
        raise ValueError(
            f"{source} has {len(prompts)} prompts, but heldout_size + train_size needs {wanted}. "
            "Lower the sizes or add rows."
        )
    shuffled = sample_split(prompts, None, params.seed, "all", source)
    heldout = shuffled[: params.heldout_size]
    rest = shuffled[params.heldout_size :]
    train = rest if params.train_size is None else rest[: params.train_size]
    return PromptSplits(train=train, heldout=heldout)


class JsonlPromptsParams(TableColumnsParams):
    path: str = Field(description="JSONL or Parquet file of prompts, one row each.")
    format: Literal["auto", "jsonl", "parquet"] = Field("auto", description="auto picks by file suffix.")
    split_column: str | None = Field(None, description="Column naming each row's split; null shuffles and cuts.")
    train_split: str = Field("train", description="split_column value of training rows.")
    heldout_split: str = Field("test", description="split_column value of held-out rows.")


def read_rows(path: Path, file_format: str) -> list[dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {path} not found")
    if file_format == "parquet" or (file_format == "auto" and path.suffix == ".parquet"):
        import pyarrow.parquet as pq

        return list(pq.read_table(path).to_pylist())
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: invalid JSON ({error.msg})") from error
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


class JsonlPrompts:
    def __init__(self, params: JsonlPromptsParams) -> None:
        self.params = params

    def load(self) -> PromptSplits:
        params = self.params
        path = Path(params.path)
        rows = read_rows(path, params.format)
        source = path.stem
        if params.split_column is None:
            return shuffle_split(rows_to_prompts(rows, params, source), params, source)

        column = params.split_column
        prompts = rows_to_prompts(rows, params, source)
        by_split: dict[str, list[Prompt]] = {params.train_split: [], params.heldout_split: []}
        ignored = 0
        for row, prompt in zip(rows, prompts):
            if column not in row:
                raise ValueError(f"{path}: a row has no split column {column!r}; set split_column or add it")
            value = str(row[column])
            if value in by_split:
                by_split[value].append(prompt)
            else:
                ignored += 1
        if ignored:
            logger.info("%s: %d rows belong to neither split and are not used", path, ignored)
        return PromptSplits(
            train=sample_split(by_split[params.train_split], params.train_size, params.seed, "train", source),
            heldout=sample_split(by_split[params.heldout_split], params.heldout_size, params.seed, "heldout", source),
        )


class HFDatasetPromptsParams(TableColumnsParams):
    path: str = Field(description="Folder written by save_to_disk, or local data files when builder is set.")
    builder: Literal["json", "csv", "parquet", "text"] | None = Field(
        None, description="load_dataset builder for local data files; null reads path with load_from_disk."
    )
    train_split: str = Field("train", description="Split with the training prompts.")
    heldout_split: str | None = Field(
        None, description="Split with the held-out prompts; null cuts them from train_split."
    )


class HFDatasetPrompts:
    def __init__(self, params: HFDatasetPromptsParams) -> None:
        self.params = params

    def _splits(self) -> Mapping[str, Any]:
        import datasets

        params = self.params
        if params.builder is not None:
            return dict(datasets.load_dataset(params.builder, data_files=params.path))
        if not Path(params.path).exists():
            raise FileNotFoundError(f"dataset folder {params.path} not found")
        loaded = datasets.load_from_disk(params.path)
        if isinstance(loaded, datasets.Dataset):
            return {params.train_split: loaded}
        return dict(loaded)

    def _rows(self, splits: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
        if name not in splits:
            raise ValueError(f"dataset {self.params.path} has no split {name!r}; splits: {', '.join(splits)}")
        return list(splits[name].to_list())

    def load(self) -> PromptSplits:
        params = self.params
        splits = self._splits()
        source = Path(params.path).stem
        train = rows_to_prompts(self._rows(splits, params.train_split), params, f"{source}-{params.train_split}")
        if params.heldout_split is None:
            return shuffle_split(train, params, source)
        heldout_rows = self._rows(splits, params.heldout_split)
        heldout = rows_to_prompts(heldout_rows, params, f"{source}-{params.heldout_split}")
        return PromptSplits(
            train=sample_split(train, params.train_size, params.seed, "train", source),
            heldout=sample_split(heldout, params.heldout_size, params.seed, "heldout", source),
        )


@hookimpl
def larpo_register_prompt_sources(register: Any) -> None:
    register(
        "jsonl",
        JsonlPrompts,
        JsonlPromptsParams,
        summary="Prompts from a JSONL or Parquet file: prompt, optional reference and split columns.",
    )
    register(
        "hf-dataset",
        HFDatasetPrompts,
        HFDatasetPromptsParams,
        summary="Prompts from a local datasets dataset (load_from_disk or local data files).",
    )
