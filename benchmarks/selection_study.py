"""Which validation metric should pick the FT checkpoint (and stop FT early): loss, accuracy or macro-F1?

Decided on validation data only, never on test. The validation split is cut in two (stratified,
seeded): the *selection* half plays the part of the run's validation set (as in the runner, at most
the profile's ``max_validation_examples`` rows), the *held-out* half is never seen by the run. One
FT run per cell trains until every criterion's early stopping (FT's own rule: ``patience``
evaluations without improvement, none before ``min_steps``) would have ended it; at each
evaluation the held-out half is scored too, so each criterion's chosen checkpoint is scored on
data it did not choose on. The DAE and CL phases come from the phase cache, as in the sweep.

    python -m benchmarks selection --datasets sst2 sst5 --regimes 8 64 --seeds 1
    python -m benchmarks selection --summary

Records: ``benchmarks/results/selection/study.jsonl`` (one per cell, resumable); summary:
``benchmarks/results/selection/SUMMARY.md``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from .paths import HERE, RESULTS
from .run import DEFAULT_DATA_ROOT, append_record, git_commit, load_benchmark_data, load_profile, model_label, phasefit_options, read_json_lines

OUTPUT = RESULTS / "selection" / "study.jsonl"
CRITERIA = ("loss", "accuracy", "macro_f1")


def stopping_point(curve: list[dict[str, Any]], criterion: str, patience: int, min_steps: int) -> tuple[dict[str, Any], bool]:
    """(the evaluation FT would restore under ``criterion``, whether its early stopping fired) for the curve so far."""
    greater = criterion != "loss"
    best, best_value, waited = None, None, 0
    for row in curve:
        value = row[f"selection_{criterion}"]
        if best_value is None or (value > best_value if greater else value < best_value):
            best, best_value, waited = row, value, 0
        else:
            waited += 1
        if waited >= patience and row["step"] >= min_steps:
            return best, True
    return best, False


def held_out_curve_callback(held_out, classes: list[str], patience: int, min_steps: int):
    """A Trainer callback that scores the held-out half at every evaluation and stops once every criterion would have."""
    import torch
    from transformers import DataCollatorWithPadding, TrainerCallback

    from phasefit.metrics import classification_metrics
    from phasefit.phases.ft import tokenized_dataset

    codes = np.array([classes.index(label) for label in held_out.classes])

    class HeldOutCurve(TrainerCallback):
        def __init__(self) -> None:
            self.curve: list[dict[str, Any]] = []
            self.dataset = None

        def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
            collate = DataCollatorWithPadding(model.encoder.tokenizer)
            if self.dataset is None:  # the tokenizer does not change during FT: tokenise once
                self.dataset = tokenized_dataset(model.encoder, held_out.texts, codes)
            dataset = self.dataset
            was_training = model.training
            model.eval()
            predicted = []
            with torch.no_grad():
                for start in range(0, len(dataset), 64):
                    batch = collate([dataset[i] for i in range(start, min(start + 64, len(dataset)))])
                    batch = {key: value.to(next(model.parameters()).device) for key, value in batch.items() if key != "labels"}
                    predicted.extend(model(**batch)["logits"].argmax(-1).tolist())
            model.train(was_training)
            scores = classification_metrics(codes, np.asarray(predicted), list(range(len(classes))))
            self.curve.append(
                {
                    "step": state.global_step,
                    "selection_loss": metrics["eval_loss"],
                    "selection_accuracy": metrics["eval_accuracy"],
                    "selection_macro_f1": metrics["eval_macro_f1"],
                    "held_out_accuracy": scores["accuracy"],
                    "held_out_macro_f1": scores["macro_f1"],
                }
            )
            if all(stopping_point(self.curve, criterion, patience, min_steps)[1] for criterion in CRITERIA):
                control.should_training_stop = True

    return HeldOutCurve()


def study_cell(dataset: str, regime: str, seed: int, recipe: str, profile_name: str, data_root: Path, cache_dir: str, model: str) -> dict[str, Any]:
    from transformers import TrainerCallback

    from phasefit import train
    from phasefit.config import FTConfig

    profile = load_profile(profile_name)
    started = time.perf_counter()
    data = load_benchmark_data(dataset, regime, seed, data_root, {**profile, "held_out_validation": True})
    held_out = data.test
    options = phasefit_options(profile, model, seed, cache_dir)
    ft = FTConfig(**options.get("ft", {}))
    options["ft"] = {**options.get("ft", {}), "patience": 10**6}  # the callback decides when to stop
    watcher = held_out_curve_callback(held_out, data.classes, ft.patience, ft.min_steps)
    train(data, options, progress=lambda title: watcher if title.endswith("FT") else TrainerCallback(), recipe=recipe)
    chosen = {}
    for criterion in CRITERIA:
        row, stopped = stopping_point(watcher.curve, criterion, ft.patience, ft.min_steps)
        chosen[criterion] = {**row, "stopped_early": stopped}
    return {
        "dataset": dataset,
        "regime": regime,
        "seed": seed,
        "recipe": recipe,
        "model": model_label(model),
        "profile": profile_name,
        "git_commit": git_commit(),
        "n_selection": len(data.validation),
        "n_held_out": len(held_out),
        "patience": ft.patience,
        "min_steps": ft.min_steps,
        "chosen": chosen,
        "curve": watcher.curve,
        "wall_seconds": round(time.perf_counter() - started, 2),
    }


def summary(records: list[dict[str, Any]]) -> str:
    lines = [
        "# FT checkpoint selection: loss vs accuracy vs macro-F1 (validation only)",
        "",
        "Generated by `python -m benchmarks selection --summary` from `study.jsonl`. Held-out accuracy / macro-F1 (%)",
        "of the checkpoint each criterion restores, scored on a half of the validation split the run never saw;",
        "in brackets the step it restores.",
        "",
        "| dataset | regime | seed | recipe | selection / held-out rows | " + " | ".join(CRITERIA) + " |",
        "|---|---|---|---|---|" + "---|" * len(CRITERIA),
    ]
    for r in sorted(records, key=lambda r: (r["dataset"], str(r["regime"]), r["seed"], r["recipe"])):
        cells = [
            f"{100 * r['chosen'][c]['held_out_accuracy']:.2f} / {100 * r['chosen'][c]['held_out_macro_f1']:.2f} ({r['chosen'][c]['step']})" for c in CRITERIA
        ]
        lines.append(f"| {r['dataset']} | {r['regime']} | {r['seed']} | {r['recipe']} | {r['n_selection']} / {r['n_held_out']} | " + " | ".join(cells) + " |")
    if records:
        lines += [
            "",
            "Mean held-out accuracy over cells (%): "
            + ", ".join(f"{c} {100 * statistics.mean(r['chosen'][c]['held_out_accuracy'] for r in records):.2f}" for c in CRITERIA),
        ]
        for c in CRITERIA[1:]:
            ahead = sum(r["chosen"][c]["held_out_accuracy"] > r["chosen"]["loss"]["held_out_accuracy"] for r in records)
            behind = sum(r["chosen"][c]["held_out_accuracy"] < r["chosen"]["loss"]["held_out_accuracy"] for r in records)
            lines.append(f"- {c} vs loss: ahead in {ahead}, behind in {behind}, tied in {len(records) - ahead - behind} of {len(records)} cells.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    from phasefit.config import default_model_path

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=[])
    parser.add_argument("--regimes", nargs="+", default=["8", "64"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1])
    parser.add_argument("--recipe", default="3phase")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--model", default=default_model_path())
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    parser.add_argument("--cache-dir", default=str(HERE.parent / ".phasefit-cache"))
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--summary", action="store_true", help="only rewrite SUMMARY.md from the records")
    args = parser.parse_args(argv)
    for dataset in args.datasets:
        for regime in args.regimes:
            for seed in args.seeds:
                done = {(r["dataset"], str(r["regime"]), r["seed"], r["recipe"]) for r in read_json_lines(args.output)}
                if (dataset, regime, seed, args.recipe) in done:
                    continue
                print(f"study: {dataset} {regime} seed {seed} {args.recipe}", flush=True)
                append_record(args.output, study_cell(dataset, regime, seed, args.recipe, args.profile, args.data_root, args.cache_dir, args.model))
    print(write_summary(args.output))


def write_summary(records: Path = OUTPUT) -> str:
    """SUMMARY.md beside the study's records, rewritten from them; returns its text."""
    text = summary(read_json_lines(records))
    (records.parent / "SUMMARY.md").write_text(text, encoding="utf-8")
    return text


if __name__ == "__main__":
    main()
