"""The phase cache: each phase's output on disk, keyed by a hash of everything it depends on.

A key holds the run's ingredients (:func:`run_ingredients`: the base model's weights or hub
revision, the token limit, phasefit's version, the resolved precision, the torch / transformers /
sentence-transformers versions), then per phase a hash of the code that trains it, its options,
seed, inputs and the key of the phase before it. Change any of them and the cache misses; nothing
stale is reused silently. The code hash is the phase's own (:data:`PHASE_CODE`), so editing
fine-tuning does not throw away a DAE that took an hour.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sentence_transformers import SentenceTransformer

from . import distributed

PACKAGE = Path(__file__).resolve().parent
# The source files each cached phase's output depends on, beside SHARED_PHASE_CODE (a later phase's key holds the
# earlier phases' keys, so their code too). config.py is not hashed for these: a key holds the phase's resolved
# options, which are all config.py makes. Any other phase (FT and st's resume folders) hashes ALL_PHASE_CODE.
SHARED_PHASE_CODE = ("phases/__init__.py", "phases/common.py", "noise.py", "distributed.py", "cache.py")
PHASE_CODE = {
    "dae": ("phases/dae.py", "losses/denoising.py"),
    "cl": ("phases/cl.py", "pairs.py"),
    "joint": ("phases/joint.py", "phases/cl.py", "pairs.py", "losses/denoising.py", "losses/joint.py"),
}
ALL_PHASE_CODE = ("phases", "losses", "pairs.py", "noise.py", "distributed.py", "config.py", "model.py", "cache.py")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json", ".txt", ".model")


def fingerprint(*parts: Any) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, default=str).encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()[:20]


def _hash_files(files: list[Path], root: Path) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root)).encode("utf-8") + b"\x00")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:20]


def phase_code_hash(phase: str | None = None, package: Path = PACKAGE) -> str:
    """A hash of the source files that train ``phase`` (``PHASE_CODE``), or of all phases' code for any other phase."""
    names = SHARED_PHASE_CODE + PHASE_CODE[phase] if phase in PHASE_CODE else ALL_PHASE_CODE
    files: list[Path] = []
    for name in names:
        path = package / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return _hash_files(sorted(set(files)), package)


def model_revision(name_or_path: str) -> str:
    """A local folder: a hash of its weight, config and tokenizer files' contents. A hub id: the cached snapshot's commit."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        # Contents, not sizes and times: a retrained checkpoint can keep both (about 0.1 s per 100 MB).
        return "sha256:" + _hash_files(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES), path)
    try:
        from huggingface_hub import snapshot_download

        return f"{name_or_path}@{Path(snapshot_download(name_or_path, local_files_only=True)).name}"
    except Exception:  # not in the local hub cache: the id is all there is to go on
        return name_or_path


def library_versions() -> dict[str, str]:
    import sentence_transformers
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "sentence_transformers": sentence_transformers.__version__}


def run_ingredients(model: str, max_length: int, precision: str) -> dict[str, Any]:
    """What every phase's output depends on besides its own options and inputs."""
    from ._version import __version__
    from .phases.common import precision_options

    return {
        "model": model_revision(model),
        "max_length": max_length,
        "phasefit": __version__,
        "precision": precision_options(precision),
        "processes": distributed.world_size(),
        "libraries": library_versions(),
    }


class PhaseCache:
    """Phase outputs on disk, keyed by everything they depend on; a no-op without a folder."""

    def __init__(self, folder: str | Path | None) -> None:
        self.folder = Path(folder).expanduser() if folder else None

    def path(self, key: str) -> Path | None:
        return self.folder / key if self.folder else None

    def load(self, key: str) -> SentenceTransformer | None:
        path = self.path(key)
        if path is None or not (path / "modules.json").is_file():
            return None
        return SentenceTransformer(str(path), local_files_only=True)

    def store(self, key: str, encoder: SentenceTransformer) -> None:
        path = self.path(key)
        if path is None or not distributed.is_main_process():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=path.parent))
        encoder.save(str(staging), create_model_card=False)
        try:
            staging.rename(path)
        except OSError:  # another run stored it first
            shutil.rmtree(staging, ignore_errors=True)
