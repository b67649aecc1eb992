"""Rebuild benchmarks/RESULTS.md and results/accuracy.png from the JSON Lines records alone.

python benchmarks/report.py [--results benchmarks/results] [--method-file ../shared/METHOD.md]
"""

from __future__ import annotations

import argparse
import math
import os
import re
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from run import LEGACY_MODEL_LABELS, read_json_lines
from scipy.stats import binomtest

HERE = Path(__file__).resolve().parent
MAIN_COLUMNS = ["3phase", "joint", "ft", "3phase+", "tuned-ft", "setfit"]
ABLATION_COLUMNS = ["3phase", "joint", "dae+ft", "cl+ft", "extra-imb", "no-imb", "ft"]
PAPER_NAMES = {"sst2": "SST-2", "sst5": "SST-5", "snips": "SNIPS2", "snips_builtin": "SNIPS", "ag_news": "AG News", "imdb": "IMDB"}
REGIME_ORDER = {"8": 0, "64": 1, "full": 2}
# The minimum the reproduction issue asks for: (datasets, regimes, methods), 3 seeds each.
MINIMUM = [
    (["sst2", "sst5", "snips", "atis", "ag_news"], ["8", "64"], ["3phase", "joint", "ft", "tuned-ft", "setfit"]),
    (["sst2", "atis"], ["64"], ["dae+ft", "cl+ft", "extra-imb", "no-imb"]),
    (["snips", "sst5"], ["full"], ["3phase", "tuned-ft"]),
]


def read_records(folder: Path) -> list[dict[str, Any]]:
    return [record for path in sorted(folder.glob("*.jsonl")) for record in read_json_lines(path)]


def paper_table3(method_file: Path) -> dict[str, dict[str, float]]:
    """MiniLM-L12 rows of the paper's Table 3 as given in METHOD.md: dataset -> {3phase, joint, ft}."""
    if not method_file.is_file():
        return {}
    rows = {}
    for line in method_file.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\|\s*([^|]+?)\s*\|\s*MiniLM-L12\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|", line)
        if match:
            rows[match.group(1)] = {"3phase": float(match.group(2)), "joint": float(match.group(3)), "ft": float(match.group(4))}
    return rows


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


def plot(groups, keys, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    methods = [m for m in ABLATION_COLUMNS + ["tuned-ft", "setfit"] if any(k[2] == m for k in groups)]
    keys = [k for k in keys if any((k[0], k[1], m) in groups for m in methods)]
    if not keys:
        return
    figure, axes = plt.subplots(figsize=(max(6, 1.6 * len(keys) * max(1, len(methods)) / 3), 4.5))
    width = 0.8 / max(1, len(methods))
    for i, method in enumerate(methods):
        means = [statistics.mean(groups[(d, r, method)]) if groups.get((d, r, method)) else np.nan for d, r in keys]
        errors = [statistics.stdev(groups[(d, r, method)]) if len(groups.get((d, r, method), [])) > 1 else 0 for d, r in keys]
        axes.bar(np.arange(len(keys)) + i * width, means, width, yerr=errors, capsize=2, label=method)
    axes.set_xticks(np.arange(len(keys)) + 0.4 - width / 2)
    axes.set_xticklabels([f"{d}\n{r}/class" if r != "full" else f"{d}\nfull" for d, r in keys])
    axes.set_ylabel("test accuracy (%), mean ± std over seeds")
    axes.legend(fontsize=8, ncol=2)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def build_report(
    records: list[dict[str, Any]],
    method_file: Path,
    picture: Path | None,
    superseded: int = 0,
    validation: list[dict[str, Any]] | None = None,
    held_out: list[dict[str, Any]] | None = None,
) -> str:
    accuracy_by_seed = by_seed(records, "accuracy")
    accuracy = summarise(accuracy_by_seed)
    macro_f1 = summarise(by_seed(records, "macro_f1"))
    keys = in_table_order({(d, r) for d, r, _ in accuracy})
    paper = paper_table3(method_file)
    lines = [
        "# Results",
        "",
        "Generated by `python benchmarks/report.py` from the records in `benchmarks/results/*.jsonl`; no number here is typed by hand.",
        "",
    ]
    models = sorted({LEGACY_MODEL_LABELS.get(r["model"], r["model"]) for r in records})
    profiles = sorted({r["profile"] for r in records})
    devices = sorted({r["device"] for r in records})
    commits = sorted({r["git_commit"] for r in records})
    lines += [
        f"- Records: {len(records)}; model(s): {', '.join(models) or '–'}; profile(s): {', '.join(profiles) or '–'}; device(s): {', '.join(devices) or '–'}; commits: {', '.join(commits) or '–'}.",
        *([f"- Superseded: {superseded} older records in `results/superseded/` are kept but not tabulated (why: its README)."] if superseded else []),
        "- Regimes: `8` / `64` labelled examples per class (seeded stratified draws), `full` = the whole training split. "
        "In the 8/64 regimes phase 1 reads the other training texts without labels, capped per profile (`cpu`: a seeded sample of 2,000 texts).",
        "- Validation: the dataset's own split, or a stratified 20 % of train; capped per profile (`cpu`: 500 rows). Everything is chosen on validation, nothing on test: "
        "FT (in every phasefit method and in tuned FT) keeps the checkpoint with the best validation accuracy (why: `results/selection/SUMMARY.md`).",
        "- Peers: `tuned-ft` = plain fine-tuning (MLP head) with the learning rate picked on validation accuracy from "
        "{2e-5, 5e-5, 1e-4}, epochs by early stopping; `setfit` = setfit defaults (CosineSimilarityLoss, 20 iterations, 1 epoch, logistic head).",
        "- SST-2's training file (GLUE train) holds phrases as well as sentences, while its test file (GLUE dev) holds sentences only: "
        "the 8 / 64 per-class draws are mostly short phrases, and validation (carved from train) reads easier than test.",
        "- Cells: test accuracy %, mean ± sample std over seeds (number of seeds). The paper's numbers are MiniLM-L12 on full data, for reference only: different model, data size and splits.",
        "",
        "## Table 3 layout: 3phase / joint / ft with the peers (test accuracy %)",
        "",
        *table(accuracy, keys, MAIN_COLUMNS, paper),
        "",
        "Macro-F1 %:",
        "",
        *table(macro_f1, keys, MAIN_COLUMNS),
        "",
        "## Table 4 layout: ablations (test accuracy %)",
        "",
        *table(accuracy, keys, ABLATION_COLUMNS),
        "",
        "## In plain words",
        "",
    ]
    lines += plain_words(accuracy_by_seed, keys, contrastive_pairs(records))
    lines += grid_edge_lines(records)
    lines += ["", "## The paper's claim: 3phase against ft on equal FT terms (issue 27's bar; test accuracy)", ""]
    lines += bar_lines(accuracy_by_seed, keys, "3phase", ("ft",), CLAIM_SEEDS, sign_test_required=False)
    lines += claim_plainly(accuracy_by_seed, keys)
    lines += claim_on_validation_lines(validation or [])
    lines += ["", "## 3phase+ against the better of tuned FT and SetFit (issue 28's bar; test accuracy)", ""]
    lines += bar_lines(accuracy_by_seed, keys)
    lines += cost_ratio_lines(records)
    lines += selection_optimism_lines(records)
    lines += ["", "## Which recipe for how much labelled data (test accuracy; also at the top of the README)", ""]
    lines += which_recipe_lines(accuracy, keys)
    lines += validation_lines(validation or [])
    lines += held_out_lines(held_out or [])
    lines += ["", "## Speed: 3phase on SST-2 at 64 per class (target: under 15 minutes on the 2-core CPU)", ""]
    lines += speed_lines(records)
    lines += ["", "## What each phase did (3phase runs that computed the phase; medians over seeds)", ""]
    lines += diagnostics_lines(records)
    lines += ["", "## Coverage of the minimum (3 seeds per cell)", ""]
    lines += coverage_lines(accuracy)
    lines += full_regime_lines(records)
    lines += ["", "## Cost", ""]
    lines += cost_lines(records)
    if picture is not None and accuracy:
        plot(accuracy, keys, picture)
        lines += ["", f"![accuracy per method]({os.path.relpath(picture, HERE)})"]
    return "\n".join(lines) + "\n"


def by_profile_and_seed(records: list[dict[str, Any]], value) -> dict[tuple, dict[int, float]]:
    """{(dataset, regime, "method (profile)"): {seed: value(record)}}: the validation study's columns."""
    seeded: dict[tuple, dict[int, float]] = defaultdict(dict)
    for record in records:
        seeded[(record["dataset"], str(record["regime"]), f"{record['method']} ({record['profile']})")][record["seed"]] = value(record)
    return seeded


def validation_accuracy(record: dict[str, Any]) -> float:
    return 100 * record["validation_accuracy"]


def validation_lines(records: list[dict[str, Any]]) -> list[str]:
    """The validation study that chose the phase budgets: validation accuracy per (dataset, regime, method under profile)."""
    if not records:
        return []
    seeded = by_profile_and_seed(records, validation_accuracy)
    wall = by_profile_and_seed(records, lambda record: record["wall_seconds"])
    columns = sorted({key[2] for key in seeded}, key=lambda name: (not name.startswith("ft"), name))
    keys = in_table_order({key[:2] for key in seeded})
    values = summarise(seeded)
    lines = ["", "## Validation study: phase budgets (validation accuracy %; chooses, never test)", ""]
    lines += [
        f"Records: `results/validation/*.jsonl` ({len(records)} runs; commits {', '.join(sorted({r['git_commit'] for r in records}))}). "
        "Profiles: `val-old` = the budgets before this study (epochs only, no warm-up, one learning rate for decoder and encoder); "
        "`val-budget` = at least 100 optimiser steps in DAE and CL, 10 % warm-up, the DAE decoder's own weights at 5e-4 and alone for 20 steps. "
        "Both cap phase 1 at 2,000 texts and validation at 500 rows, like `cpu`; FT is the same in both (ft runs once, under `val-old`). "
        "Issue 28's profiles (`val-proto`, `val-proto-supcon`, `val-proto-self`, `val-lpft`, `val-proto-supcon-short`, `val-plus`, `val-names`, `val-lr5`, `val-wise`, `val-lrhead`, `val-cw1`) keep those caps and "
        "change FT only; each is a YAML file in `benchmarks/profiles/` whose first line says what it adds, and the rules below compare each with the run it adds to. "
        "The records hold test scores too (the runner writes them); this section and the decisions below read validation accuracy only.",
        "",
        *table(values, keys, columns),
        "",
    ]
    for dataset, regime in keys:
        old, new, plain = (seeded.get((dataset, regime, name)) for name in ("3phase (val-old)", "3phase (val-budget)", "ft (val-old)"))
        for label, other in (("3phase (val-old)", old), ("ft", plain)):
            if new and other:
                ahead, behind, shared = paired_counts(new, other)
                lines.append(
                    f"- {dataset}, {regime}: 3phase (val-budget) {compare(list(new.values()), list(other.values()))} {label}; seed by seed ahead {ahead}, behind {behind} of {shared}."
                )
    lines += budget_decision(seeded)
    lines += component_decisions(seeded)
    lines += cheaper_decisions(seeded, wall)
    steps = defaultdict(list)
    for record in records:
        for phase in ("dae", "cl"):
            stats = record.get("phase_stats", {}).get(phase)
            if stats and "steps" in stats:
                steps[(record["profile"], phase)].append((stats["steps"], stats.get("first_logged_loss"), stats.get("last_logged_loss")))
    for (profile, phase), rows in sorted(steps.items()):
        lines.append(
            f"- {profile} {phase}: median {statistics.median(r[0] for r in rows):.0f} steps, loss {statistics.median(r[1] for r in rows):.3f} → "
            f"{statistics.median(r[2] for r in rows):.3f} (first → last logged, medians over {len(rows)} runs)."
        )
    return lines


# Issue 28's components, each an FT option under a validation profile, judged against the run it adds to. The rule
# was written down before any of these runs was read: a component stays if, over the (dataset, regime, seed) runs
# both have, it gains at least KEEP_MARGIN points of validation accuracy on average and is ahead in at least half.
COMPONENTS = [
    ("ft (val-proto)", "ft (val-old)", "prototype head from class names + class means, instead of the random MLP head"),
    ("ft (val-lpft)", "ft (val-old)", "LP-FT: the MLP head alone for the first 50 steps"),
    ("ft (val-proto-supcon)", "ft (val-proto)", "a supervised contrastive term (weight 0.5) beside cross-entropy"),
    ("ft (val-proto-self)", "ft (val-proto)", "one round of self-training on the unlabelled pool"),
    ("3phase (val-proto-supcon)", "ft (val-proto-supcon)", "the DAE and CL phases (val-budget budgets) before the same FT"),
    ("ft (val-plus)", "ft (val-proto-supcon-short)", "self-training together with the supervised contrastive term and the short FT budget"),
    ("ft (val-plus)", "ft (val-old)", "all of the above together, against the paper's FT (a summary, not a component)"),
    ("ft (val-names)", "ft (val-proto-supcon-short)", "the class names as members of the contrastive term's batch (FastFit), added to 3phase+'s FT"),
    ("ft (val-lr5)", "ft (val-proto-supcon-short)", "3phase+'s FT with the encoder's learning rate at 5e-5 instead of 3e-5"),
    ("ft (val-wise)", "ft (val-proto-supcon-short)", "WiSE-FT: 3phase+'s FT returns the half-way mix of its starting and fine-tuned weights"),
    ("ft (val-lrhead)", "ft (val-proto-supcon-short)", "SetFit's logistic-regression head, fit on 3phase+'s fine-tuned encoder, instead of its prototype head"),
    ("ft (val-cw1)", "ft (val-proto-supcon-short)", "3phase+'s FT with the supervised contrastive term at weight 1.0 instead of 0.5"),
]
KEEP_MARGIN = 0.5


def paired_runs(seeded: dict[tuple, dict[int, float]], name: str, base: str) -> list[tuple]:
    """(dataset, regime, seed) of every run that both columns hold: the same labelled draw under both."""
    return [
        (d, r, seed) for (d, r, column), runs in seeded.items() if column == name and (d, r, base) in seeded for seed in runs if seed in seeded[(d, r, base)]
    ]


def paired_values(seeded: dict[tuple, dict[int, float]], name: str, base: str) -> list[tuple[float, float]]:
    """(name's value, base's value) of every run both columns hold."""
    return [(seeded[(d, r, name)][seed], seeded[(d, r, base)][seed]) for d, r, seed in paired_runs(seeded, name, base)]


def component_decisions(seeded: dict[tuple, dict[int, float]]) -> list[str]:
    """Each component of COMPONENTS kept or dropped by the rule above, from validation accuracy only."""
    lines = []
    for name, base, what in COMPONENTS:
        pairs = paired_values(seeded, name, base)
        if not pairs:
            continue
        difference = statistics.mean(new - old for new, old in pairs)
        ahead = sum(new > old for new, old in pairs)
        verdict = "kept" if difference >= KEEP_MARGIN and 2 * ahead >= len(pairs) else "dropped"
        lines.append(
            f"- Component {name} ({what}) against {base}: over {len(pairs)} paired run(s) mean difference {difference:+.2f} points, "
            f"ahead in {ahead}: **{verdict}** (rule fixed before the runs were read: kept at a mean gain of at least {KEEP_MARGIN} points "
            "and ahead in at least half)."
        )
    return lines


def held_out_accuracy(record: dict[str, Any]) -> float:
    return 100 * record["test"]["accuracy"]


# Judged on held-out validation (profiles with held_out_validation): the run chose its checkpoint (and, with
# self-training, whether to keep the round) on the other part, so a component cannot look better just by choosing.
# The rule was written down (commit 516a10c) before any of these runs was read.
HELD_OUT_COMPONENTS = [
    ("ft (held-out-plus-self)", "ft (held-out-plus)", "one round of self-training on the unlabelled pool, added to 3phase+'s FT"),
]
HELD_OUT_PEERS = [("ft (held-out-plus)", "setfit (held-out)"), ("ft (held-out-plus-self)", "setfit (held-out)")]


def held_out_decisions(seeded: dict[tuple, dict[int, float]]) -> list[str]:
    """Each component of HELD_OUT_COMPONENTS kept at a mean held-out gain of KEEP_MARGIN points, ahead in more paired runs than behind."""
    lines = []
    for name, base, what in HELD_OUT_COMPONENTS:
        pairs = paired_values(seeded, name, base)
        if not pairs:
            continue
        difference = statistics.mean(new - old for new, old in pairs)
        ahead, behind = sum(new > old for new, old in pairs), sum(new < old for new, old in pairs)
        verdict = "kept" if difference >= KEEP_MARGIN and ahead > behind else "dropped"
        lines.append(
            f"- Component {name} ({what}) against {base}: over {len(pairs)} paired run(s) mean held-out difference {difference:+.2f} points, "
            f"ahead in {ahead}, behind in {behind}: **{verdict}** (rule fixed before the runs were read: kept at a mean gain of at least "
            f"{KEEP_MARGIN} points and ahead in more paired runs than behind)."
        )
    return lines


def held_out_lines(records: list[dict[str, Any]]) -> list[str]:
    """The held-out validation study: components and peers scored on validation rows that no run chose on."""
    if not records:
        return []
    seeded = by_profile_and_seed(records, held_out_accuracy)
    columns = sorted({key[2] for key in seeded}, key=lambda name: (not name.startswith("ft"), name))
    keys = in_table_order({key[:2] for key in seeded})
    lines = ["", "## Held-out validation study (held-out validation accuracy %; chooses, never test)", ""]
    lines += [
        f"Records: `results/held_out/*.jsonl` ({len(records)} runs; commits {', '.join(sorted({r['git_commit'] for r in records}))}). "
        "Each run's validation split is cut in two, stratified and seeded (the same cut for every method of a seed): the run chooses "
        "on one part (at most 500 rows, at most half) and is scored on the other (at most 1,000 rows). The test split is never scored. "
        "SetFit never looks at validation, so here it meets the FT variants on data none of them chose on. Profiles: `held-out` "
        "(SetFit), `held-out-plus` (3phase+'s FT), `held-out-plus-self` (the same with one round of self-training).",
        "",
        *table(summarise(seeded), keys, columns),
        "",
    ]
    lines += held_out_decisions(seeded)
    for name, peer in HELD_OUT_PEERS:
        ahead = behind = 0
        for dataset, regime in keys:
            mine, theirs = seeded.get((dataset, regime, name)), seeded.get((dataset, regime, peer))
            if mine and theirs:
                cell_ahead, cell_behind, shared = paired_counts(mine, theirs)
                ahead, behind = ahead + cell_ahead, behind + cell_behind
                lines.append(
                    f"- {dataset}, {regime}: {name} {compare(list(mine.values()), list(theirs.values()))} {peer}; seed by seed ahead {cell_ahead}, behind {cell_behind} of {shared}."
                )
        if ahead + behind:
            lines.append(
                f"- {name} against {peer}, run by run: ahead in {ahead}, behind in {behind} (two-sided sign test p = {binomtest(ahead, ahead + behind).pvalue:.3f})."
            )
    gaps = defaultdict(list)
    for record in records:
        if record.get("validation_accuracy") is not None:
            gaps[f"{record['method']} ({record['profile']})"].append(100 * record["validation_accuracy"] - held_out_accuracy(record))
    if gaps:
        shown = ", ".join(f"{name} {statistics.mean(values):+.2f} ({len(values)} runs)" for name, values in sorted(gaps.items()))
        lines.append(f"- Chosen-on part minus held-out part, mean over runs (points): {shown}.")
    return lines


# A budget that saves time is taken when it costs little accuracy: fixed before its runs were read.
CHEAPER = [("ft (val-proto-supcon-short)", "ft (val-proto-supcon)", "FT stops from step 50 (min_steps 50, patience 3) instead of running at least 200 steps")]
CHEAPER_MARGIN = -0.5


def cheaper_decisions(seeded: dict[tuple, dict[int, float]], wall: dict[tuple, dict[int, float]] | None = None) -> list[str]:
    """Each cheaper setting of CHEAPER taken if its mean validation difference is at least CHEAPER_MARGIN points and it is
    behind in at most half of the paired runs; the wall-time ratio (medians over the same runs) is reported beside it."""
    lines = []
    for name, base, what in CHEAPER:
        pairs = paired_runs(seeded, name, base)
        if not pairs:
            continue
        difference = statistics.mean(seeded[(d, r, name)][s] - seeded[(d, r, base)][s] for d, r, s in pairs)
        behind = sum(seeded[(d, r, name)][s] < seeded[(d, r, base)][s] for d, r, s in pairs)
        taken = difference >= CHEAPER_MARGIN and 2 * behind <= len(pairs)
        cost = ""
        if wall:
            ratio = statistics.median(wall[(d, r, name)][s] for d, r, s in pairs) / statistics.median(wall[(d, r, base)][s] for d, r, s in pairs)
            cost = f"; median wall time {ratio:.2f}x the base's"
        lines.append(
            f"- Cheaper {name} ({what}) against {base}: over {len(pairs)} paired run(s) mean difference {difference:+.2f} points, behind in {behind}"
            f"{cost}: **{'taken' if taken else 'not taken'}** (rule fixed before the runs were read: taken at a mean difference of at least "
            f"{CHEAPER_MARGIN} points and behind in at most half)."
        )
    return lines


def budget_decision(seeded: dict[tuple, dict[int, float]]) -> list[str]:
    """The rule fixed before the study's runs were read: the new budgets become the defaults if, over every
    (dataset, regime, seed) run under both profiles, 3phase's mean validation accuracy under `val-budget` is at least
    that under `val-old` and it is ahead in at least half of the paired runs; otherwise the old budgets stay."""
    pairs = [
        (seeded[(d, r, "3phase (val-budget)")][seed], old[seed])
        for (d, r, name), old in seeded.items()
        if name == "3phase (val-old)" and (d, r, "3phase (val-budget)") in seeded
        for seed in old
        if seed in seeded[(d, r, "3phase (val-budget)")]
    ]
    if not pairs:
        return []
    difference = statistics.mean(new - old for new, old in pairs)
    ahead = sum(new > old for new, old in pairs)
    chosen = "val-budget" if difference >= 0 and 2 * ahead >= len(pairs) else "val-old"
    return [
        f"- Decision rule (fixed before the runs were read): the new budgets become the defaults if, over the paired runs, 3phase's mean "
        f"validation accuracy under val-budget is at least that under val-old and it is ahead in at least half of them. Over {len(pairs)} "
        f"paired run(s): mean difference {difference:+.2f} points, ahead in {ahead}. Chosen: **{chosen}**."
    ]


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


def tally_lines(seeded, keys) -> list[str]:
    """One line per peer: in how many dataset/regime cells 3phase beats, ties with or loses to it, where it loses,
    and over every run both sides share (same dataset, regime and seed, hence the same labelled draw) how often 3phase is ahead."""
    out = []
    for peer in ("tuned-ft", "setfit", "ft", "joint"):
        counts: dict[str, list[str]] = {"beats": [], "ties": [], "loses": []}
        ahead, behind, paired = run_by_run(seeded, keys, "3phase", peer)
        for dataset, regime in keys:
            three, other = seeded.get((dataset, regime, "3phase"), {}), seeded.get((dataset, regime, peer), {})
            outcome = verdict(list(three.values()), list(other.values()))
            if outcome:
                counts[outcome].append(f"{dataset}/{regime}")
        total = sum(len(v) for v in counts.values())
        if total:
            where = f"; it loses on {', '.join(counts['loses'])}" if counts["loses"] else ""
            out.append(
                f"- Against {peer}, over {total} cell(s) with two or more seeds each: 3phase beats it in {len(counts['beats'])}, "
                f"ties in {len(counts['ties'])} (difference within the larger seed std), loses in {len(counts['loses'])}{where}. "
                f"Run by run (same dataset, regime and seed) over all cells: 3phase ahead in {ahead}, behind in {behind}, "
                f"equal in {paired - ahead - behind}"
                + (f" (two-sided sign test on the unequal ones: p = {binomtest(ahead, ahead + behind).pvalue:.3f})." if ahead + behind else ".")
            )
    return out


PEERS = ("tuned-ft", "setfit")
BAR_REGIMES = ("8", "64")
BAR_SEEDS = {"8": 5, "64": 3}


# The paper's claim as issue 27 states it: 3phase beats ft beyond the larger seed std in at least 5 of the 10 cells
# and loses none, 3 seeds a cell; the sign test over runs is reported beside it, not required.
CLAIM_SEEDS = {"8": 3, "64": 3}


def bar_lines(
    seeded, keys, challenger: str = "3phase+", peers: tuple[str, ...] = PEERS, seeds: dict[str, int] = BAR_SEEDS, sign_test_required: bool = True
) -> list[str]:
    """Issue 28's bar, from the records: the challenger beats the better of the peers (tuned FT and SetFit, by mean)
    beyond the larger seed std in at least 5 cells, loses in none, and is ahead of each peer run by run with a
    two-sided sign test p < 0.05 (paired on the same dataset, regime and seed, hence the same labelled draw).
    With ``sign_test_required=False`` (issue 27's claim, one peer) the sign test is reported but does not decide."""
    cells = [(d, r) for d, r in keys if r in BAR_REGIMES and seeded.get((d, r, challenger))]
    if not cells:
        return [f"- No {challenger} runs on test yet."]
    unrun = [(d, r) for d, r in keys if r in BAR_REGIMES and (d, r) not in cells]
    outcomes: dict[str, list[str]] = {"beats": [], "ties": [], "loses": []}
    out, short = [], []
    for dataset, regime in cells:
        mine = seeded[(dataset, regime, challenger)]
        ran = {peer: seeded[(dataset, regime, peer)] for peer in peers if seeded.get((dataset, regime, peer))}
        missing = [peer for peer in peers if peer not in ran]
        if len(mine) < seeds[regime] or any(len(v) < seeds[regime] for v in ran.values()) or missing:
            short.append(f"{dataset}/{regime}")
        if missing:
            # No verdict against "the better peer" while a peer has no run here: it might be the better one.
            out.append(f"- {dataset}, {regime}: no verdict yet ({', '.join(missing)} not run).")
            continue
        best = max(ran, key=lambda peer: statistics.mean(ran[peer].values()))
        outcome = verdict(list(mine.values()), list(ran[best].values()))
        if outcome:
            outcomes[outcome].append(f"{dataset}/{regime}")
        which = f"the better peer ({best})" if len(peers) > 1 else best
        out.append(f"- {dataset}, {regime}: {challenger} {compare(list(mine.values()), list(ran[best].values()))} {which}.")
    tests = []
    for peer in peers:
        ahead, behind, _ = run_by_run(seeded, cells, challenger, peer)
        p_value = binomtest(ahead, ahead + behind).pvalue if ahead + behind else 1.0
        tests.append((peer, ahead, behind, p_value))
    met = len(outcomes["beats"]) >= 5 and not outcomes["loses"] and (not sign_test_required or all(a > b and p < 0.05 for _, a, b, p in tests))
    rule = "at least 5 wins, no loss" + (", ahead of each peer with p < 0.05" if sign_test_required else "")
    seed_rule = ", ".join(f"{n} at {'8 per class' if r == '8' else r}" for r, n in seeds.items())
    summary = [
        f"- Over {sum(map(len, outcomes.values()))} cell(s) with every peer and two or more seeds on each side: {challenger} beats "
        f"{'the better peer' if len(peers) > 1 else peers[0]} in "
        f"{len(outcomes['beats'])}, ties in {len(outcomes['ties'])}, loses in {len(outcomes['loses'])}"
        + (f" ({', '.join(outcomes['loses'])})" if outcomes["loses"] else "")
        + ".",
        *(f"- Run by run against {peer}: ahead in {a}, behind in {b} (two-sided sign test p = {p:.3f})." for peer, a, b, p in tests),
        f"- The bar ({rule}): **{'met' if met else 'not met'}**."
        + (f" Cells short of their seeds ({seed_rule}) on some side: {', '.join(short)}." if short else "")
        + (f" Cells with no {challenger} run yet: {', '.join(f'{d}/{r}' for d, r in unrun)}." if unrun else ""),
    ]
    return summary + out


def cost_ratio_lines(records, challenger: str = "3phase+", reference: str = "setfit", limit: float = 2.0) -> list[str]:
    """Issue 28's cost bar read from the test records: per cell, the challenger's median wall time over the reference's.
    The records ran under the same runner and thread count, but not in turn; SPEED.md's side-by-side is the bar's measure."""
    seconds = wall_seconds_by_run_key(records)
    ratios = {
        (d, r): statistics.median(seconds[(d, r, challenger)]) / statistics.median(seconds[(d, r, reference)])
        for d, r, method in list(seconds)
        if method == challenger and seconds.get((d, r, reference))
    }
    if not ratios:
        return []
    cells = in_table_order(ratios)
    over = [key for key in cells if ratios[key] > limit]
    shown = ", ".join(f"{d}/{r} {ratios[(d, r)]:.1f}x" for d, r in cells)
    return [
        f"- Wall time, {challenger} over {reference} (medians of the test records per cell): {shown}. At most {limit:g}x in "
        f"{len(cells) - len(over)} of {len(cells)} cell(s)"
        + (f"; over it: {', '.join(f'{d}/{r}' for d, r in over)}." if over else ".")
        + " (The records ran under the same runner and thread count, not in turn: SPEED.md's side-by-side runs are the bar's measure.)"
    ]


def claim_plainly(seeded, keys) -> list[str]:
    """Issue 27's verdict in one sentence, over the cells where both 3phase and ft have two or more seeds."""
    outcomes = [
        verdict(list(seeded[(d, r, "3phase")].values()), list(seeded[(d, r, "ft")].values()))
        for d, r in keys
        if r in BAR_REGIMES and seeded.get((d, r, "3phase")) and seeded.get((d, r, "ft"))
    ]
    judged = [o for o in outcomes if o]
    if not judged:
        return []
    wins, losses = judged.count("beats"), judged.count("loses")
    shows = wins >= 5 and not losses
    return [
        f"- Plainly: 3phase beats ft beyond the seed spread in {wins} of the {len(judged)} cell(s) judged so far and loses {losses}; "
        f"the paper's claim {'shows' if shows else 'does not show'} with this model on our data."
    ]


def claim_on_validation_lines(validation: list[dict[str, Any]]) -> list[str]:
    """The same question on the validation study's runs (3phase under the budgets chosen there against ft), which is
    what the defaults were chosen on; said beside the test verdict so that a missing test cell still has its evidence."""
    seeded = by_profile_and_seed(validation, validation_accuracy)
    pairs = [
        (seeded[(d, r, "3phase (val-budget)")][s], seeded[(d, r, "ft (val-old)")][s]) for d, r, s in paired_runs(seeded, "3phase (val-budget)", "ft (val-old)")
    ]
    if not pairs:
        return []
    ahead = sum(a > b for a, b in pairs)
    behind = sum(a < b for a, b in pairs)
    return [
        f"- On validation (the study below: 3phase under the chosen budgets against ft, same FT): over {len(pairs)} paired run(s) "
        f"mean difference {statistics.mean(a - b for a, b in pairs):+.2f} points, ahead in {ahead}, behind in {behind}."
    ]


WHICH_RECIPE_METHODS = ("3phase+", "3phase", "ft", "tuned-ft", "setfit")
REGIME_WORDS = {"8": "about 8 per class", "64": "about 64 per class", "full": "thousands (a full training set)"}


def which_recipe_lines(accuracy, keys) -> list[str]:
    """The README's opening table: per regime, the method with the best mean test accuracy over the datasets on which
    every method in the row has all its seeds (5 at 8 per class, 3 at 64: the bar's), so that no method is averaged
    over easier data or a lucky first seed. A method with all its seeds on no dataset of the regime is left out of the
    row (and named under the table) rather than emptying it."""
    lines = ["| labelled texts | pick | mean test accuracy % over the same datasets | datasets |", "|---|---|---|---|"]
    left_out, not_run = [], []
    for regime in ("8", "64", "full"):
        needed = BAR_SEEDS.get(regime, 1)
        complete = {m: [d for d, r in keys if r == regime and len(accuracy.get((d, r, m), [])) >= needed] for m in WHICH_RECIPE_METHODS}
        ran = {m for m in WHICH_RECIPE_METHODS if any(accuracy.get((d, r, m)) for d, r in keys if r == regime)}
        methods = [m for m in WHICH_RECIPE_METHODS if complete[m]]
        left_out += [f"{m} at {regime}" for m in WHICH_RECIPE_METHODS if m in ran and not complete[m]]
        datasets = [d for d, r in keys if r == regime and all(d in complete[m] for m in methods)]
        if len(methods) < 2 or not datasets:
            continue
        not_run += [f"{m} at {regime}" for m in WHICH_RECIPE_METHODS if m not in ran]
        means = {m: statistics.mean(statistics.mean(accuracy[(d, regime, m)]) for d in datasets) for m in methods}
        ranked = sorted(means, key=lambda m: -means[m])
        lines.append(f"| {REGIME_WORDS[regime]} | `{ranked[0]}` | " + ", ".join(f"{m} {means[m]:.2f}" for m in ranked) + f" | {', '.join(datasets)} |")
    if len(lines) == 2:
        return ["Not measured yet."]
    notes = [
        f"Not in a row yet (fewer seeds than the row needs on every dataset): {', '.join(left_out)}." if left_out else "",
        f"No test run yet in a row's regime: {', '.join(not_run)}." if not_run else "",
    ]
    if any(notes):
        lines += ["", " ".join(note for note in notes if note)]
    return lines


WHICH_RECIPE_MARKERS = ("<!-- which-recipe: generated by benchmarks/report.py -->", "<!-- /which-recipe -->")


def write_which_recipe(readme: Path, lines: list[str]) -> None:
    """Replace the block between the markers in the README with the table (no-op when the markers are absent)."""
    text = readme.read_text(encoding="utf-8")
    start, end = WHICH_RECIPE_MARKERS
    if start not in text or end not in text:
        return
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(head + start + "\n" + "\n".join(lines) + "\n" + end + tail, encoding="utf-8")


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


def computed_phase(record: dict[str, Any], phase: str) -> bool:
    """Whether the run trained this phase itself (its stats count optimiser steps) rather than loading it from the cache."""
    return bool((record.get("phase_stats") or {}).get(phase, {}).get("steps"))


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


def contrastive_pairs(records) -> dict[tuple, float]:
    """(dataset, regime, method) -> median number of pairs its contrastive phase (CL or joint) trained on, over the runs
    that computed that phase; the count includes the copies the imbalance correction added."""
    pairs: dict[tuple, list[int]] = defaultdict(list)
    for record in records:
        for phase in ("cl", "joint"):
            count = (record.get("phase_stats") or {}).get(phase, {}).get("pairs")
            if count:
                pairs[(record["dataset"], str(record["regime"]), record["method"])].append(count)
    return {key: statistics.median(counts) for key, counts in pairs.items()}


def grid_edge_lines(records) -> list[str]:
    """How often tuned FT picked an end of its learning-rate grid: often means the grid may stop short of the best rate."""
    tuned = [r for r in records if r["method"] == "tuned-ft" and r.get("chosen_learning_rate") and r.get("config", {}).get("learning_rate_grid")]
    if not tuned:
        return []
    largest = sum(r["chosen_learning_rate"] == max(r["config"]["learning_rate_grid"]) for r in tuned)
    smallest = sum(r["chosen_learning_rate"] == min(r["config"]["learning_rate_grid"]) for r in tuned)
    return [
        f"- Tuned FT picked the largest learning rate of its grid in {largest} of {len(tuned)} runs and the smallest in {smallest} "
        "(ties on validation go to the smaller rate): where an end is picked often, a wider grid might make the baseline stronger still."
    ]


def selection_optimism_lines(records, methods=("3phase+", "tuned-ft", "setfit"), untuned: str = "setfit") -> list[str]:
    """How much higher validation reads than test, per method: SetFit never looks at validation, so a method's excess
    over SetFit's gap is what choosing on the same validation rows (checkpoints, learning rates) added to its validation score."""
    gaps: dict[str, dict[tuple, list[float]]] = {}
    for record in records:
        if record["method"] in methods and record.get("validation_accuracy") is not None and record.get("test"):
            cell_key = (record["dataset"], str(record["regime"]))
            gaps.setdefault(record["method"], {}).setdefault(cell_key, []).append(100 * (record["validation_accuracy"] - record["test"]["accuracy"]))
    if untuned not in gaps or len(gaps) < 2:
        return []
    means = {method: statistics.mean(g for cell_gaps in cells.values() for g in cell_gaps) for method, cells in gaps.items()}
    counts = {method: sum(len(cell_gaps) for cell_gaps in cells.values()) for method, cells in gaps.items()}
    shown = ", ".join(f"{method} {means[method]:+.2f} ({counts[method]} runs)" for method in methods if method in means)
    lines = [
        f"- Validation minus test accuracy, mean over runs (points): {shown}. {untuned} never looks at validation, so the rest's excess over its gap is what choosing on the same validation rows added to their validation scores."
    ]
    for method in methods:
        if method == untuned or method not in gaps:
            continue
        excess = {key: statistics.mean(gaps[method][key]) - statistics.mean(gaps[untuned][key]) for key in gaps[method] if key in gaps[untuned]}
        if excess:
            worst = sorted(excess, key=lambda key: -excess[key])[:2]
            lines.append(f"- {method}'s excess over {untuned}'s gap is largest on " + " and ".join(f"{d}/{r} ({excess[(d, r)]:+.2f})" for d, r in worst) + ".")
    return lines


def plain_words(seeded, keys, pairs: dict[tuple, float] | None = None) -> list[str]:
    pairs = pairs or {}
    accuracy = summarise(seeded)
    out = tally_lines(seeded, keys)
    for dataset, regime in keys:
        three = accuracy.get((dataset, regime, "3phase"))
        if not three:
            continue
        for peer in ("tuned-ft", "setfit", "ft"):
            other = accuracy.get((dataset, regime, peer))
            if other:
                ahead, behind, shared = paired_counts(seeded[(dataset, regime, "3phase")], seeded[(dataset, regime, peer)])
                paired = f"; seed by seed ahead {ahead}, behind {behind} of {shared}" if shared > 1 else ""
                out.append(f"- {dataset}, {regime}: 3phase {compare(three, other)} {peer}{paired}.")
        joint, ft = accuracy.get((dataset, regime, "joint")), accuracy.get((dataset, regime, "ft"))
        if joint and ft:
            order = " > ".join(name for name, _ in sorted([("3phase", three), ("joint", joint), ("ft", ft)], key=lambda item: -statistics.mean(item[1])))
            out.append(f"- {dataset}, {regime}: observed order {order} (the paper's is 3phase > joint > ft).")
        ablations = {name: accuracy[(dataset, regime, name)] for name in ("dae+ft", "cl+ft", "extra-imb", "no-imb") if accuracy.get((dataset, regime, name))}
        if ablations:
            largest = max(ablations, key=lambda name: abs(statistics.mean(three) - statistics.mean(ablations[name])))
            against = "; ".join(f"{compare(three, values)} {name}" for name, values in ablations.items())
            out.append(f"- {dataset}, {regime}: 3phase {against}. The ablation that moves accuracy most: {largest}.")
            unchanged = [name for name in ablations if same_on_every_seed(seeded[(dataset, regime, name)], seeded[(dataset, regime, "3phase")])]
            if unchanged:
                why = IMBALANCE_NO_OP if set(unchanged) <= {"extra-imb", "no-imb"} else ""
                out.append(f"- {dataset}, {regime}: {' and '.join(unchanged)} equal 3phase on every seed{why}.")
            counted = {name: pairs[(dataset, regime, name)] for name in ("3phase", "joint", "cl+ft", "extra-imb", "no-imb") if (dataset, regime, name) in pairs}
            if counted:
                out.append(
                    f"- {dataset}, {regime}: pairs the contrastive phase trained on (median over the runs that computed it; "
                    f"3phase, joint and cl+ft share one correction): " + ", ".join(f"{name} {count:,.0f}" for name, count in counted.items()) + "."
                )
    return out or ["- Not enough records yet for a comparison."]


IMBALANCE_NO_OP = (
    ": the imbalance correction adds pairs only when the classes of the labelled draw differ in size, so on a draw with "
    "equal classes these recipes train on the same pairs as 3phase and this cell says nothing about the correction"
)


def same_on_every_seed(a: dict[int, float], b: dict[int, float]) -> bool:
    """True when a has runs and each of them scored exactly what b scored on the same seed."""
    return bool(a) and all(seed in b and b[seed] == value for seed, value in a.items())


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


def coverage_lines(accuracy) -> list[str]:
    complete, missing = 0, []
    for datasets, regimes, methods in MINIMUM:
        for dataset in datasets:
            for regime in regimes:
                for method in methods:
                    seeds = len(accuracy.get((dataset, regime, method), []))
                    if seeds >= 3:
                        complete += 1
                    else:
                        missing.append(f"{dataset}/{regime}/{method} ({seeds} of 3 seeds)")
    return [f"- {complete} of {complete + len(missing)} cells complete.", *([f"- Still to run: {', '.join(missing)}."] if missing else [])]


def seconds_per_step(records, phase: str) -> float | None:
    """Median seconds per optimiser step of a phase over the runs that computed it (not loaded it from the cache)."""
    rates = [r["phase_seconds"][phase] / r["phase_stats"][phase]["steps"] for r in records if computed_phase(r, phase)]
    return statistics.median(rates) if rates else None


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
LAST_SITTING_PHASE_CLOCK = {"unrecorded", "3aaf2d7", "d7b6faa", "4e91b2b"}


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


def wall_seconds_by_run_key(records) -> dict[tuple, list[float]]:
    """Each run's wall seconds, grouped by (dataset, regime, method)."""
    by_key: dict[tuple, list[float]] = defaultdict(list)
    for record in records:
        by_key[(record["dataset"], str(record["regime"]), record["method"])].append(record["wall_seconds"])
    return by_key


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--method-file", type=Path, default=HERE.parent.parent / "shared" / "METHOD.md")
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--readme", type=Path, default=HERE.parent / "README.md", help="its which-recipe block is rewritten from the records")
    args = parser.parse_args()
    superseded = len(read_records(args.results / "superseded"))
    validation = read_records(args.results / "validation")
    records = read_records(args.results)
    held_out = read_records(args.results / "held_out")
    report = build_report(records, args.method_file, HERE / "results" / "accuracy.png", superseded, validation, held_out)
    args.output.write_text(report, encoding="utf-8")
    print(f"wrote {args.output}")
    accuracy = summarise(by_seed(records, "accuracy"))
    write_which_recipe(args.readme, which_recipe_lines(accuracy, in_table_order({(d, r) for d, r, _ in accuracy})))


if __name__ == "__main__":
    main()
