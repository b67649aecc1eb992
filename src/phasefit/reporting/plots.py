"""Pictures of a run: learning curves per phase and 2-D projections of validation embeddings per stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..config import PHASE_TITLES


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curve_records(phase_stats: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The phases' learning curves as flat records ``{phase, series, step, value}`` (one JSON line each in ``curves.jsonl``)."""
    return [
        {"phase": phase, "series": series, "step": step, "value": value}
        for phase, stats in phase_stats.items()
        for series, points in (stats.get("curve") or {}).items()
        for step, value in points
    ]


def curves_from_records(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, list[list[float]]]]:
    """The inverse of :func:`curve_records`: phase -> series -> [[step, value], ...]."""
    curves: dict[str, dict[str, list[list[float]]]] = {}
    for record in records:
        curves.setdefault(record["phase"], {}).setdefault(record["series"], []).append([record["step"], record["value"]])
    return curves


def plot_learning_curves(phase_stats: dict[str, dict[str, Any]], path: str | Path) -> Path | None:
    """One panel per trained phase: training loss per step, validation loss and accuracy where the phase evaluates."""
    phases = [(name, stats["curve"]) for name, stats in phase_stats.items() if stats.get("curve")]
    if not phases:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(phases), figsize=(4.2 * len(phases), 3.4), squeeze=False)
    for axis, (name, curve) in zip(axes[0], phases):
        for key, style in (("train_loss", "-"), ("eval_loss", "o-")):
            if curve.get(key):
                steps, values = zip(*curve[key])
                axis.plot(steps, values, style, markersize=3, label=key.replace("_", " "))
        axis.set_title(PHASE_TITLES.get(name, name))
        axis.set_xlabel("optimiser step")
        axis.set_ylabel("loss")
        axis.legend(fontsize=8, loc="upper left")
        if curve.get("eval_accuracy"):
            steps, values = zip(*curve["eval_accuracy"])
            twin = axis.twinx()
            twin.plot(steps, values, "s--", color="tab:green", markersize=3, label="validation accuracy")
            twin.set_ylabel("validation accuracy")
            twin.legend(fontsize=8, loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)


def plot_projections(snapshots: dict[str, np.ndarray], labels: Sequence[str], path: str | Path, seed: int = 0) -> Path | None:
    """t-SNE of the same validation texts' embeddings before training and after each phase, coloured by class."""
    if not snapshots:
        return None
    from sklearn.manifold import TSNE

    plt = _pyplot()
    classes = sorted(set(labels))
    colour = np.array([classes.index(label) for label in labels])
    figure, axes = plt.subplots(1, len(snapshots), figsize=(3.8 * len(snapshots), 3.8), squeeze=False)
    for axis, (stage, embeddings) in zip(axes[0], snapshots.items()):
        perplexity = max(2.0, min(30.0, (len(embeddings) - 1) / 3))
        points = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(embeddings)
        axis.scatter(points[:, 0], points[:, 1], c=colour, cmap="tab20" if len(classes) > 10 else "tab10", s=8)
        axis.set_title(stage)
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle("validation embeddings (t-SNE), coloured by class")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)
