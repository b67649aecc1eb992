"""phasefit: three-phase fine-tuning of transformer text classifiers (DAE → contrastive → MLP head)."""

from ._version import __version__
from .data import LabelledData, Split, load_data
from .errors import ConfigError, DataError, ModelFilesError, PhaseFitError
from .estimator import PhaseFitClassifier
from .model import PhaseFitModel
from .pipeline import TrainResult, evaluate_split, train
from .recipes import RECIPES, Recipe, Step

__all__ = [
    "__version__",
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
