"""Grouping records by cell and seed, the statistics every section uses, and the Markdown table."""

from __future__ import annotations

import functools
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..paths import PROFILES
from ..records import read_json_lines

MAIN_COLUMNS = ["3phase", "joint", "ft", "ft+st", "3phase+", "tuned-ft", "setfit", "fastfit"]


ABLATION_COLUMNS = ["3phase", "joint", "dae+ft", "cl+ft", "extra-imb", "no-imb", "ft"]


PAPER_NAMES = {"sst2": "SST-2", "sst5": "SST-5", "snips": "SNIPS2", "snips_builtin": "SNIPS", "ag_news": "AG News", "imdb": "IMDB"}


REGIME_ORDER = {"8": 0, "64": 1, "full": 2}


def read_records(folder: Path) -> list[dict[str, Any]]:
    return [record for path in sorted(folder.glob("*.jsonl")) for record in read_json_lines(path)]


def by_seed(records: list[dict[str, Any]], metric: str) -> dict[tuple, dict[int, float]]:
    """(dataset, regime, method) -> {seed: test metric in %}."""
    groups: dict[tuple, dict[int, float]] = defaultdict(dict)
    for record in records:
        if record.get("test"):
            groups[(record["dataset"], str(record["regime"]), record["method"])][record["seed"]] = 100 * record["test"][metric]
    return groups


def summarise(seeded: dict[tuple, dict[int, float]]) -> dict[tuple, list[float]]:
    """The per-seed values of :func:`by_seed` as plain lists, for means and spreads."""
    return {key: list(values.values()) for key, values in seeded.items()}


def paired_counts(a: dict[int, float], b: dict[int, float]) -> tuple[int, int, int]:
    """Seeds where a is ahead of b, behind it, and shared in all. Both sides train on the same labelled draw
    per seed, so each shared seed is a paired trial."""
    shared = set(a) & set(b)
    return sum(a[s] > b[s] for s in shared), sum(a[s] < b[s] for s in shared), len(shared)


def cell(values: list[float] | None) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.2f} (1 seed)"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f} ({len(values)})"


def spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else float("inf")


def compare(a: list[float], b: list[float]) -> str:
    """:func:`verdict` in words, with the difference of the means and the seed spread."""
    difference = statistics.mean(a) - statistics.mean(b)
    margin = max(spread(a), spread(b))
    outcome = verdict(a, b)
    if outcome is None:
        return f"{difference:+.2f} points (one seed: no verdict)"
    if outcome == "ties":
        return f"ties with ({difference:+.2f} points, within the seed spread of {margin:.2f})"
    return f"{'beats' if outcome == 'beats' else 'loses to'} ({difference:+.2f} points, seed spread {margin:.2f})"


def table_head(columns: list[str]) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def in_table_order(keys) -> list[tuple]:
    """(dataset, regime, ...) keys by dataset, then regime 8, 64, full."""
    return sorted(keys, key=lambda key: (key[0], REGIME_ORDER.get(key[1], 9)))


def table(groups, keys, columns, paper=None) -> list[str]:
    lines = table_head(["dataset", "regime", *columns, *(["paper 3-Phase / Joint / FT (MiniLM-L12, full data)"] if paper is not None else [])])
    for dataset, regime in keys:
        row = [cell(groups.get((dataset, regime, column))) for column in columns]
        if not any(groups.get((dataset, regime, column)) for column in columns):
            continue
        extra = ""
        if paper is not None:
            reference = paper.get(PAPER_NAMES.get(dataset, ""), None)
            extra = f" {reference['3phase']:.2f} / {reference['joint']:.2f} / {reference['ft']:.2f} |" if reference else " – |"
        lines.append(f"| {dataset} | {regime} | " + " | ".join(row) + " |" + extra)
    return lines


def study_column(record: dict[str, Any]) -> str:
    """How a study in profiles/studies.yaml names a record's column: its method and profile."""
    return f"{record['method']} ({record.get('profile')})"


def by_profile_and_seed(records: list[dict[str, Any]], value) -> dict[tuple, dict[int, float]]:
    """{(dataset, regime, "method (profile)"): {seed: value(record)}}: the validation study's columns."""
    seeded: dict[tuple, dict[int, float]] = defaultdict(dict)
    for record in records:
        seeded[(record["dataset"], str(record["regime"]), study_column(record))][record["seed"]] = value(record)
    return seeded


def paired_runs(seeded: dict[tuple, dict[int, float]], name: str, base: str) -> list[tuple]:
    """(dataset, regime, seed) of every run that both columns hold: the same labelled draw under both."""
    return [
        (d, r, seed) for (d, r, column), runs in seeded.items() if column == name and (d, r, base) in seeded for seed in runs if seed in seeded[(d, r, base)]
    ]


def paired_values(seeded: dict[tuple, dict[int, float]], name: str, base: str) -> list[tuple[float, float]]:
    """(name's value, base's value) of every run both columns hold."""
    return [(seeded[(d, r, name)][seed], seeded[(d, r, base)][seed]) for d, r, seed in paired_runs(seeded, name, base)]


def paired_verdict(a: dict[int, float], b: dict[int, float]) -> tuple[str | None, float, float, int]:
    """(beats / ties / loses, mean paired difference, two-sided paired t-test p, seeds) over the seeds both ran: each
    seed is the same labelled draw under both. A win or a loss needs p < 0.05; None below two shared seeds."""
    from scipy.stats import ttest_rel

    shared = sorted(set(a) & set(b))
    if len(shared) < 2:
        return None, math.nan, math.nan, len(shared)
    differences = [a[seed] - b[seed] for seed in shared]
    mean = statistics.mean(differences)
    if len(set(differences)) == 1:  # no spread: the t statistic is undefined; every seed says the same
        p_value = 0.0 if mean else 1.0
    else:
        p_value = float(ttest_rel([a[seed] for seed in shared], [b[seed] for seed in shared]).pvalue)
    outcome = ("beats" if mean > 0 else "loses") if p_value < 0.05 and mean else "ties"
    return outcome, mean, p_value, len(shared)


def paired_line(a: dict[int, float], b: dict[int, float], dataset: str, regime: str, challenger: str, which: str) -> tuple[str | None, str]:
    """One cell's paired verdict (:func:`paired_verdict`) of the challenger's runs ``a`` against ``which``'s ``b``, and its line."""
    outcome, difference, p_value, shared = paired_verdict(a, b)
    said = {"beats": "beats", "ties": "ties with", "loses": "loses to", None: "has too few shared seeds against"}[outcome]
    detail = f": mean paired difference {difference:+.2f} points over {shared} seeds (paired t-test p = {p_value:.3f})" if outcome else ""
    return outcome, f"- {dataset}, {regime}: {challenger} {said} {which}{detail}."


def verdict(a: list[float], b: list[float]) -> str | None:
    """beats / loses when the means differ by more than the larger seed std, else ties; None without two seeds on each side."""
    if len(a) < 2 or len(b) < 2:
        return None
    difference = statistics.mean(a) - statistics.mean(b)
    if abs(difference) <= max(spread(a), spread(b)):
        return "ties"
    return "beats" if difference > 0 else "loses"


def run_by_run(seeded, keys, method: str, peer: str) -> tuple[int, int, int]:
    """:func:`paired_counts` summed over the (dataset, regime) cells in keys."""
    counts = [paired_counts(seeded.get((d, r, method), {}), seeded.get((d, r, peer), {})) for d, r in keys]
    return tuple(sum(column) for column in zip(*counts)) if counts else (0, 0, 0)


def computed_phase(record: dict[str, Any], phase: str) -> bool:
    """Whether the run trained this phase itself (its stats count optimiser steps) rather than loading it from the cache."""
    return bool((record.get("phase_stats") or {}).get(phase, {}).get("steps"))


def seconds_per_step(records, phase: str) -> float | None:
    """Median seconds per optimiser step of a phase over the runs that computed it (not loaded it from the cache)."""
    rates = [r["phase_seconds"][phase] / r["phase_stats"][phase]["steps"] for r in records if computed_phase(r, phase)]
    return statistics.median(rates) if rates else None


def wall_seconds_by_run_key(records) -> dict[tuple, list[float]]:
    """Each run's wall seconds, grouped by (dataset, regime, method)."""
    by_key: dict[tuple, list[float]] = defaultdict(list)
    for record in records:
        by_key[(record["dataset"], str(record["regime"]), record["method"])].append(record["wall_seconds"])
    return by_key


@functools.cache
def load_study_rules() -> dict[str, Any]:
    """profiles/studies.yaml: every study's decision rule, written down before its runs (read once; not to be changed)."""
    import yaml

    return yaml.safe_load((PROFILES / "studies.yaml").read_text(encoding="utf-8"))
