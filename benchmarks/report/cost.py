"""Speed, what each phase did, the full-data regime and the cost of every method."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Any

from .common import ABLATION_COLUMNS, MAIN_COLUMNS, computed_phase, in_table_order, load_study_rules, seconds_per_step, table_head, wall_seconds_by_run_key
from .paper import MINIMUM


def speed_lines(records) -> list[str]:
    runs = [r for r in records if r["dataset"] == "sst2" and str(r["regime"]) == "64" and r["method"] == "3phase"]
    uncached = [r for r in runs if not r.get("cached_phases")]
    if not runs:
        return ["- Not measured yet."]
    out = []
    for label, chosen in (("all runs", runs), ("runs that computed every phase (no cache)", uncached)):
        if chosen:
            median = statistics.median(r["wall_seconds"] for r in chosen)
            verdict_text = "under" if median < 15 * 60 else "over"
            out.append(f"- {label}: median wall time {median:.0f} s = {median / 60:.1f} min over {len(chosen)} run(s): {verdict_text} the 15-minute target.")
    if uncached:
        shares = {phase: statistics.median(r["phase_seconds"].get(phase, 0.0) for r in uncached) for phase in ("dae", "cl", "ft")}
        out.append(
            "- Median seconds per phase (uncached runs): "
            + ", ".join(f"{phase} {seconds:.0f} s" for phase, seconds in shares.items())
            + f"; the largest is {max(shares, key=shares.get)}."
        )
    else:
        out += composed_speed_lines(records, runs)
    return out


def composed_speed_lines(records, runs) -> list[str]:
    """Every 3phase run loaded a phase from the cache, so its wall time understates a first run. Compose one instead: the
    median time of each phase over the 3phase runs that computed it, else over the SST-2 64 runs of the recipes that did
    (dae+ft, cl+ft, ...), plus the 3phase runs' own overhead."""
    cell = [r for r in records if r["dataset"] == "sst2" and str(r["regime"]) == "64"]

    def seconds(phase: str, among: list[dict]) -> list[float]:
        return [r["phase_seconds"][phase] for r in among if computed_phase(r, phase)]

    computed = {phase: seconds(phase, runs) or seconds(phase, cell) for phase in ("dae", "cl", "ft")}
    if not all(computed.values()):
        return ["- No run computed every phase, and not every phase has been computed in some run: a first run's time is not known yet."]
    shares = {phase: statistics.median(seconds) for phase, seconds in computed.items()}
    overhead = statistics.median(r["wall_seconds"] - sum(r["phase_seconds"].values()) for r in runs)
    total = overhead + sum(shares.values())
    verdict_text = "under" if total < 15 * 60 else "over"
    return [
        f"- Every 3phase run here loaded some phase from the cache. A first run, composed from the median time of each phase over "
        f"the runs that computed it ({', '.join(f'{phase} {seconds:.0f} s over {len(computed[phase])}' for phase, seconds in shares.items())}) "
        f"plus {overhead:.0f} s of loading and evaluation: {total:.0f} s = {total / 60:.1f} min, {verdict_text} the 15-minute target; "
        f"the largest phase is {max(shares, key=shares.get)}."
    ]


def diagnostics_lines(records) -> list[str]:
    """Optimiser steps and loss first -> last per phase, from the `phase_stats` that newer records carry."""
    stats: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        if record["method"] == "3phase":
            for phase, values in (record.get("phase_stats") or {}).items():
                if computed_phase(record, phase):
                    stats[(record["dataset"], str(record["regime"]))][phase].append(values)
    if not stats:
        return ["- No record carries phase statistics yet."]

    def median(runs: list[dict], field: str) -> float:
        return statistics.median(run[field] for run in runs)

    def loss_curve(runs: list[dict]) -> str:
        return (
            f"{median(runs, 'steps'):.0f} steps, loss {median(runs, 'first_logged_loss'):.3f} → {median(runs, 'last_logged_loss'):.3f} ({len(runs)})"
            if runs
            else "–"
        )

    lines = table_head(["dataset", "regime", "dae", "cl", "ft: best step / steps (runs)"])
    for dataset, regime in in_table_order(stats):
        phases = stats[(dataset, regime)]
        ft = phases.get("ft", [])
        ft_text = f"{median(ft, 'best_step'):.0f} / {median(ft, 'steps'):.0f} ({len(ft)})" if ft else "–"
        lines.append(f"| {dataset} | {regime} | {loss_curve(phases.get('dae', []))} | {loss_curve(phases.get('cl', []))} | {ft_text} |")
    lines += [
        "",
        "The DAE loss starts near ln(vocabulary size) ≈ 10.3 because the decoder's cross-attention and the LM head's transform layer start untrained (a sentence-embedding checkpoint has neither); its other weights are the encoder's, tied.",
    ]
    return lines


def full_regime_lines(records) -> list[str]:
    """Each full-data dataset of the minimum: the runs recorded so far, and what one run costs here by projection (the
    optimiser steps that the whole training split implies under the recorded configs, times the step rates measured in
    the 8/64 runs), so a reader can weigh the missing runs and check the projection against the measured ones."""
    out = []
    for dataset in sorted({d for datasets, regimes, _ in MINIMUM if "full" in regimes for d in datasets}):
        runs, full_runs = [], []
        for record in records:
            if record["dataset"] == dataset:
                (full_runs if str(record["regime"]) == "full" else runs).append(record)
        hours_by_method: dict[str, list[float]] = defaultdict(list)
        for record in full_runs:
            hours_by_method[record["method"]].append(record["wall_seconds"] / 3600)
        recorded = "; ".join(f"{method} {len(hours)} run(s), median {statistics.median(hours):.1f} h" for method, hours in sorted(hours_by_method.items()))
        status = f"recorded {recorded}" if recorded else "no record"
        drawn = [r for r in runs if r["method"] == "3phase" and "n_unlabelled" in r]
        rates = {phase: seconds_per_step(runs, phase) for phase in ("dae", "cl", "ft")}
        grids = [len(r["config"]["learning_rate_grid"]) for r in runs if "learning_rate_grid" in r.get("config", {})]
        if not drawn or None in rates.values() or not grids:
            out.append(f"- {dataset}/full: {status}, and too few measured phases to project its cost.")
            continue
        texts = drawn[0]["n_train"] + drawn[0]["n_unlabelled"]
        config = drawn[0]["config"]
        dae, cl, ft = config["dae"], config["cl"], config["ft"]
        # The examples per step the measured rates were taken at, as the runs recorded them.
        batch = {phase: max(r["phase_stats"][phase]["effective_batch_size"] for r in runs if computed_phase(r, phase)) for phase in rates}
        dae_steps = math.ceil(min(texts, dae.get("max_texts") or texts) / batch["dae"]) * dae["epochs"]
        cl_steps = math.ceil(texts * cl["pairs_per_example"] / batch["cl"]) * cl["epochs"]
        # FT evaluates once per epoch and stops only after `patience` evaluations without improvement.
        ft_steps = max(ft["min_steps"], (ft["patience"] + 1) * math.ceil(texts / batch["ft"]))
        dae_hours, cl_hours, ft_hours = (steps * rates[phase] / 3600 for phase, steps in (("dae", dae_steps), ("cl", cl_steps), ("ft", ft_steps)))
        out.append(
            f"- {dataset}/full: {status}. The whole training split holds {texts:,} texts; under the recorded configs one 3phase run "
            f"takes {dae_steps:,.0f} DAE steps (capped texts), {cl_steps:,.0f} CL steps and at least {ft_steps:,.0f} FT steps, which at the median "
            f"rates measured in the 8/64 runs ({rates['dae']:.2f} / {rates['cl']:.2f} / {rates['ft']:.2f} s a step) is about {dae_hours + cl_hours + ft_hours:.1f} h "
            f"({cl_hours:.1f} h of it CL); tuned FT trains FT {grids[0]} times, about {grids[0] * ft_hours:.1f} h. "
            "The FT rate includes the validation passes, relatively more frequent at 8/64 per class than on the full split." + measured_rate_sentence(full_runs)
        )
    return out


# Before 68633cc the runner clocked each phase over the last sitting only; a run with a sitting on one of these commits
# has partial phase_seconds (its wall_seconds are whole).
LAST_SITTING_PHASE_CLOCK = set(load_study_rules()["partial_phase_clock_commits"])


def phase_clock_is_whole(record: dict[str, Any]) -> bool:
    commits = record.get("sitting_commits") or []
    return len(commits) < 2 or not LAST_SITTING_PHASE_CLOCK & set(commits)


def measured_rate_sentence(full_runs) -> str:
    """The step rates the full runs themselves measured, to set beside the projected ones."""
    clocked = [r for r in full_runs if phase_clock_is_whole(r) and computed_phase(r, "cl") and computed_phase(r, "ft")]
    if not clocked:
        return ""
    cl, ft = seconds_per_step(clocked, "cl"), seconds_per_step(clocked, "ft")
    return f" The {len(clocked)} full 3phase run(s) with every sitting's phase time recorded measured {cl:.2f} (CL) / {ft:.2f} (FT) s a step (median)."


def cost_lines(records) -> list[str]:
    """Median wall minutes per run, one row per dataset and regime, one column per method."""
    by_key = wall_seconds_by_run_key(records)
    methods = [m for m in dict.fromkeys(MAIN_COLUMNS + ABLATION_COLUMNS) if any(key[2] == m for key in by_key)]
    out = ["Median wall time of a run in minutes (runs):", "", *table_head(["dataset", "regime", *methods])]
    for dataset, regime in in_table_order({key[:2] for key in by_key}):
        cells = [f"{statistics.median(s) / 60:.1f} ({len(s)})" if (s := by_key.get((dataset, regime, m))) else "–" for m in methods]
        out.append(f"| {dataset} | {regime} | " + " | ".join(cells) + " |")
    out.append("")
    shared = [r for r in records if r.get("load_average", 0) > 2.5]
    if shared:
        out.append(f"- {len(shared)} run(s) shared the CPU with other work (1-minute load average above 2.5 on 2 cores): their wall times are upper bounds.")
    out.append("- A cached phase (same inputs, computed by an earlier run) costs only its loading time; `cached_phases` in each record says which.")
    return out
