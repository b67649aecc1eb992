"""Issue 47's DAE study: what each DAE profile's phase did (steps, loss) and its loss curves, from the held-out records."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from .common import computed_phase, table_head

DAE_PROFILE_PREFIX = "held-out-dae-"


def computed_daes(records: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(dataset, profile) -> the DAE stats of the held-out runs that trained their DAE (a cached DAE has no curve)."""
    daes: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if str(record.get("profile", "")).startswith(DAE_PROFILE_PREFIX) and computed_phase(record, "dae"):
            daes[(record["dataset"], record["profile"])].append({**record["phase_stats"]["dae"], "seed": record["seed"]})
    return daes


def dae_study_lines(records: list[dict[str, Any]], picture: Path | None = None, link: str = "") -> list[str]:
    """A table per (dataset, profile) and, where records carry curves, a plot at ``picture`` shown under ``link``."""
    daes = computed_daes(records)
    if not daes:
        return ["- No held-out run has trained a DAE of the study yet."]
    lines = [
        "What the DAE of each profile did, over the runs that trained it (a DAE with `dae.seed` set is trained once per "
        "corpus and then read from the cache: once for SNIPS, once per seed for SST-2, whose validation is carved from train):",
        "",
        *table_head(["dataset", "profile", "DAEs trained", "steps (median)", "loss first → last (median)"]),
    ]
    for (dataset, profile), runs in sorted(daes.items()):
        first = statistics.median(run["first_logged_loss"] for run in runs)
        last = statistics.median(run["last_logged_loss"] for run in runs)
        steps = statistics.median(run["steps"] for run in runs)
        lines.append(f"| {dataset} | {profile} | {len(runs)} | {steps:.0f} | {first:.3f} → {last:.3f} |")
    curves = {key: [run for run in runs if run.get("curve", {}).get("train_loss")] for key, runs in daes.items()}
    if picture is not None and any(curves.values()):
        plot_curves(curves, picture)
        lines += ["", f"![DAE training loss per step]({link or picture})"]
    elif picture is not None:
        lines += ["", "- No record of the study carries a loss curve yet (records before the curves were kept hold the first and last loss only)."]
    return lines


def plot_curves(curves: dict[tuple[str, str], list[dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({dataset for (dataset, _), runs in curves.items() if runs})
    figure, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.6), squeeze=False)
    for axis, dataset in zip(axes[0], datasets):
        for (name, profile), runs in sorted(curves.items()):
            for run in runs if name == dataset else []:
                steps, losses = zip(*run["curve"]["train_loss"])
                axis.plot(steps, losses, label=f"{profile.removeprefix(DAE_PROFILE_PREFIX)} (seed {run['seed']})")
        axis.set_title(dataset)
        axis.set_xlabel("optimiser step")
        axis.set_ylabel("DAE training loss")
        axis.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
