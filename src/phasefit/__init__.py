"""phasefit: three-phase fine-tuning of transformer text classifiers (DAE → contrastive → MLP head)."""

__version__ = "0.1.0"

from .data import LabelledData, Split, load_data  # noqa: E402
from .errors import ConfigError, DataError, ModelFilesError, PhaseFitError  # noqa: E402
from .estimator import PhaseFitClassifier  # noqa: E402
from .model import PhaseFitModel  # noqa: E402
from .pipeline import TrainResult, evaluate_split, train  # noqa: E402
from .recipes import RECIPES, Recipe, Step  # noqa: E402

__all__ = [
    "ConfigError",
    "DataError",
    "LabelledData",
    "ModelFilesError",
    "PhaseFitClassifier",
    "PhaseFitError",
    "PhaseFitModel",
    "RECIPES",
    "Recipe",
    "Split",
    "Step",
    "TrainResult",
    "evaluate_split",
    "load_data",
    "train",
]
