"""Run under torchrun by test_distributed.py: every recipe on a tiny set, each model saved to OUT/<recipe>."""

import sys

from phasefit import RECIPES, train
from phasefit.distributed import close

data, model, out = sys.argv[1:4]
options = {
    "model": model,
    "seed": 0,
    "snapshot_examples": 0,
    "dae": {"epochs": 1, "learning_rate": 1e-3, "min_steps": 0},
    "cl": {"epochs": 1, "learning_rate": 1e-3, "min_steps": 0},
    "joint": {"epochs": 1, "learning_rate": 1e-3, "min_steps": 0},
    "ft": {"epochs": 3, "min_steps": 0, "learning_rate": 1e-3, "head_size": 16, "patience": 2},
}
for recipe in RECIPES:
    train(data, options, recipe=recipe).save(f"{out}/{recipe}")
close()
