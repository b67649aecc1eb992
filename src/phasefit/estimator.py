"""A scikit-learn estimator around :func:`phasefit.train`: ``fit`` / ``predict`` / ``predict_proba`` / ``score`` on texts.

    from phasefit import PhaseFitClassifier
    clf = PhaseFitClassifier(recipe="3phase", seed=1, ft={"patience": 5})
    clf.fit(texts, labels).predict(["a gorgeous, witty film"])

Every phasefit option is a keyword (``dae={...}``, ``max_length=...``); :meth:`get_params` and
:meth:`set_params` see them like the named ones, so ``sklearn.base.clone``, ``Pipeline`` and
``GridSearchCV`` work (``set_params(ft__learning_rate=1e-4)`` sets one phase option).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from .config import PHASE_CONFIGS, RunConfig
from .errors import ConfigError, DataError
from .model import PhaseFitModel

CLASSES_KEY = "estimator_classes"


OPTION_NAMES = [name for name in RunConfig.__dataclass_fields__ if name not in {"phases", "model", "recipe", "seed"}] + list(PHASE_CONFIGS)


class PhaseFitClassifier(ClassifierMixin, BaseEstimator):
    """Train a phasefit recipe on ``(X, y)``; X is a sequence of texts (list, array, pandas Series).

    The keywords are phasefit's options (the fields of :class:`phasefit.config.RunConfig`, one dict
    per phase); left at None, an option keeps phasefit's default.
    """

    def __init__(self, recipe: Any = "3phase", model: str | None = None, seed: int = 42, **options: Any) -> None:
        unknown = sorted(set(options) - set(OPTION_NAMES))
        if unknown:
            raise ConfigError(f"PhaseFitClassifier: unknown option {unknown[0]!r}; the options are {', '.join(OPTION_NAMES)}.")
        self.recipe = recipe
        self.model = model
        self.seed = seed
        for name in OPTION_NAMES:
            setattr(self, name, options.get(name))

    def set_params(self, **params: Any) -> "PhaseFitClassifier":
        """As scikit-learn's, plus ``phase__option`` for one option of a phase (e.g. ``ft__learning_rate``)."""
        plain = {}
        for key, value in params.items():
            phase, separator, option = key.partition("__")
            if not separator:
                plain[key] = value
            elif phase in PHASE_CONFIGS:
                plain[phase] = {**(plain.get(phase) or getattr(self, phase) or {}), option: value}
            else:
                raise ConfigError(f"PhaseFitClassifier.set_params: {key!r}: {phase!r} is not a phase ({', '.join(PHASE_CONFIGS)}).")
        return super().set_params(**plain)

    def _options(self) -> dict[str, Any]:
        options = {name: getattr(self, name) for name in OPTION_NAMES if getattr(self, name) is not None}
        options.update(recipe=self.recipe, seed=self.seed)
        if self.model is not None:
            options["model"] = self.model
        return options

    def fit(self, X: Sequence[str], y: Any) -> "PhaseFitClassifier":
        """Train on the texts ``X`` with labels ``y``; a share of them is held out for validation.

        ``y`` holds one label per text, or (multi-label) a list of labels per text, or a 0/1 indicator matrix
        (texts x labels); :meth:`predict` answers in the same form.
        """
        from .pipeline import train

        texts = _texts(X, "X")
        form = _label_form(y)
        count = len(y) if form != "single" else np.asarray(y, dtype=object).ravel().size
        if len(texts) != count:
            raise DataError(f"PhaseFitClassifier.fit: X has {len(texts)} texts but y has {count} labels.")
        options = self._options()
        if form == "indicator":
            matrix = np.asarray(y)
            columns = [f"{index:06d}" for index in range(matrix.shape[1])]  # names that sort in column order
            frame = pd.DataFrame({"text": texts, **{name: matrix[:, index].astype(int) for index, name in enumerate(columns)}})
            options["indicator_columns"] = columns
            labels = list(matrix)
        elif form == "lists":
            labels = list(y)
            frame = pd.DataFrame({"text": texts, "labels": [sorted({str(label) for label in row}) for row in labels]})
        else:
            labels = list(np.asarray(y, dtype=object).ravel())
            frame = pd.DataFrame({"text": texts, "label": [str(label) for label in labels]})
        result = train(frame, options)
        self.model_ = result.model
        self.result_ = result
        self.label_form_ = form
        if form == "indicator":
            self.classes_ = np.arange(np.asarray(y).shape[1])
        else:
            originals = {str(label): label for row in labels for label in (row if form == "lists" else [row])}
            self.classes_ = np.array([originals[name] for name in self.model_.labels], dtype=object if form == "lists" else None)
        self.n_features_in_ = 1
        return self

    def predict_proba(self, X: Sequence[str]) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_`` (multi-label: each label's own probability)."""
        check_is_fitted(self, "model_")
        probabilities = self.model_.predict_proba(_texts(X, "X"))
        if getattr(self, "label_form_", "single") != "indicator":
            return probabilities
        full = np.zeros((len(probabilities), len(self.classes_)), dtype=probabilities.dtype)  # a column no training row had stays 0
        full[:, [int(name) for name in self.model_.labels]] = probabilities
        return full

    def predict(self, X: Sequence[str]) -> Any:
        """One label per text; multi-label: a 0/1 matrix or a list of label lists, the form ``y`` had."""
        probabilities = self.predict_proba(X)
        form = getattr(self, "label_form_", "single")
        if form == "single":
            return self.classes_[probabilities.argmax(axis=1)]
        if form == "indicator":
            thresholds = np.ones(len(self.classes_), dtype=np.float32)
            thresholds[[int(name) for name in self.model_.labels]] = self.model_.thresholds
            return (probabilities >= thresholds).astype(int)
        return [[label for label, p, t in zip(self.classes_, row, self.model_.thresholds) if p >= t] for row in probabilities]

    def save(self, directory: str | Path) -> Path:
        """The fitted model as a phasefit folder (``PhaseFitModel.from_pretrained`` or :meth:`load` read it)."""
        check_is_fitted(self, "model_")
        self.model_.info[CLASSES_KEY] = [_plain(label) for label in self.classes_]
        self.model_.info["estimator_params"] = {k: v for k, v in self.get_params().items() if _is_json(v)}
        self.model_.info["estimator_label_form"] = getattr(self, "label_form_", "single")
        return self.model_.save_pretrained(directory)

    @classmethod
    def load(cls, directory: str | Path) -> "PhaseFitClassifier":
        """A fitted estimator from a folder written by :meth:`save` (or by ``phasefit train``)."""
        model = PhaseFitModel.from_pretrained(directory)
        estimator = cls(**model.info.get("estimator_params", {}))
        estimator.model_ = model
        estimator.label_form_ = model.info.get("estimator_label_form", "lists" if model.multi_label else "single")
        estimator.classes_ = np.array(model.info.get(CLASSES_KEY, model.labels), dtype=object if estimator.label_form_ == "lists" else None)
        estimator.n_features_in_ = 1
        return estimator

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        tags.non_deterministic = False
        return tags


def _texts(X: Any, name: str) -> list[str]:
    if isinstance(X, str):
        raise DataError(f"PhaseFitClassifier: {name} must be a sequence of texts, not a single string.")
    values = list(X.iloc[:, 0] if isinstance(X, pd.DataFrame) else np.asarray(X, dtype=object).ravel())
    bad = [i for i, value in enumerate(values) if not isinstance(value, str)]
    if bad:
        raise DataError(f"PhaseFitClassifier: {name} row {bad[0]} is {type(values[bad[0]]).__name__}, not a text.")
    return values


def _label_form(y: Any) -> str:
    """``single`` (one label per text), ``lists`` (a list of labels per text) or ``indicator`` (a 0/1 matrix)."""
    if isinstance(y, (np.ndarray, pd.DataFrame)) or (isinstance(y, list) and y and all(isinstance(row, (list, tuple, np.ndarray)) for row in y)):
        values = np.asarray(y, dtype=object) if not isinstance(y, pd.DataFrame) else y.to_numpy()
        if values.ndim == 2 and values.size and all(value in (0, 1) for value in values.ravel()):
            return "indicator"
    if not isinstance(y, (str, np.ndarray)) and len(y) and all(isinstance(row, (list, tuple, set, frozenset)) for row in y):
        return "lists"
    return "single"


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _is_json(value: Any) -> bool:
    import json

    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _signature() -> inspect.Signature:
    """``__init__``'s signature with every option named, so that scikit-learn's get_params / clone see them."""
    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    parameters += [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default) for name, default in (("recipe", "3phase"), ("model", None), ("seed", 42))
    ]
    parameters += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None) for name in OPTION_NAMES]
    return inspect.Signature(parameters)


PhaseFitClassifier.__init__.__signature__ = _signature()
