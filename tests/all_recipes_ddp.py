"""Run under torchrun by test_distributed.py: every recipe (or those named, comma-separated) on a tiny set, each model
saved to OUT/<recipe>; a fifth argument draws that many labelled rows per class (the rest become the unlabelled pool)."""

import sys

from phasefit import RECIPES, train
from phasefit.distributed import close

data, model, out = sys.argv[1:4]
recipes = sys.argv[4].split(",") if len(sys.argv) > 4 else list(RECIPES)
options = {
    "model": model,
    "seed": 0,
    "snapshot_examples": 0,
    "dae": {"epochs": 1, "learning_rate": 1e-3, "min_steps": 0},
    "cl": {"epochs": 1, "learning_rate": 1e-3, "min_steps": 0},
    "joint": {"epochs": 1, "learning_rate": 1e-3, "min_steps": 0},
    "ft": {"epochs": 3, "min_steps": 0, "learning_rate": 1e-3, "head_size": 16, "patience": 2},
    "st": {"per_class": 4, "confidence": 0.0},
    **({"samples_per_class": int(sys.argv[5])} if len(sys.argv) > 5 else {}),
}
for recipe in recipes:
    train(data, options, recipe=recipe).save(f"{out}/{recipe}")
close()
