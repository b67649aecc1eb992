"""Hyper-parameter search with Optuna over the paper's ranges; the objective is validation accuracy only."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from .config import merge
from .data import LabelledData
from .errors import ConfigError
from .recipes import parse_recipe


def suggest_options(trial: Any, phases: list[str]) -> dict[str, Any]:
    """The search space of the paper's Table 5 for the phases a recipe runs (one batch size for all phases)."""
    batch_size = trial.suggest_categorical("batch_size", [16, 32, 64])
    options: dict[str, Any] = {}
    if "dae" in phases:
        options["dae"] = {
            "learning_rate": trial.suggest_float("dae.learning_rate", 1e-5, 2e-4, log=True),
            "epochs": trial.suggest_int("dae.epochs", 1, 4),
            "deletion_ratio": trial.suggest_float("dae.deletion_ratio", 0.3, 0.7),
        }
    for phase in ("cl", "joint"):
        if phase in phases:
            options[phase] = {
                "learning_rate": trial.suggest_float(f"{phase}.learning_rate", 1e-5, 5e-5, log=True),
                "epochs": trial.suggest_int(f"{phase}.epochs", 1, 6),
                "min_ratio": trial.suggest_float(f"{phase}.min_ratio", 1.1, 2.0),
                "max_ratio": trial.suggest_categorical(f"{phase}.max_ratio", [4.0, 8.0, 20.0]),
            }
    options["ft"] = {
        "learning_rate": trial.suggest_float("ft.learning_rate", 1e-5, 1e-4, log=True),
        "freeze_encoder": trial.suggest_categorical("ft.freeze_encoder", [False, True]),
    }
    for phase in options:
        options[phase]["batch_size"] = batch_size
    return options


def tune(
    data: LabelledData,
    base_options: Mapping[str, Any],
    trials: int,
    storage: str | Path,
    study_name: str = "phasefit",
    progress: Any = None,
) -> tuple[dict[str, Any], Any]:
    """Run trials until the study stored in SQLite at ``storage`` has ``trials``; returns (best options, study).

    Rerunning with the same storage resumes the study: finished trials are kept.
    """
    try:
        import optuna
    except ImportError:
        raise ConfigError("phasefit tune needs the optuna package (pip install optuna).") from None
    from .pipeline import train

    recipe = parse_recipe(base_options.get("recipe", "3phase"))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=study_name,
        storage=f"sqlite:///{Path(storage).resolve()}",
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=int(base_options.get("seed", 42))),
    )

    def objective(trial: Any) -> float:
        options = merge(dict(base_options), suggest_options(trial, recipe.phases))
        result = train(data, options, progress=progress)
        trial.set_user_attr("validation_macro_f1", result.validation_metrics["macro_f1"])
        return result.validation_metrics["accuracy"]

    finished = len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE])
    if trials > finished:
        study.optimize(objective, n_trials=trials - finished)
    best = merge(dict(base_options), suggest_options(optuna.trial.FixedTrial(study.best_params), recipe.phases))
    return best, study
