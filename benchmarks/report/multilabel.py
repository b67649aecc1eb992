"""The multi-label section of RESULTS.md (issue 48): GoEmotions-style records, scored by micro- and macro-F1 over label sets.

Which phasefit recipe is "the best" in a regime is chosen on validation (the highest mean validation macro-F1 over its
seeds, rule written before any multi-label run); that recipe is then held against SetFit's one-vs-rest mode on test
macro-F1, paired by seed (each seed is the same labelled draw under both).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from .common import by_seed, cell, in_table_order, load_study_rules, paired_verdict, study_column, summarise, table_head

MULTI_LABEL_METHODS = ["ft+st", "3phase", "ft", "tuned-ft", "setfit"]
PHASEFIT_RECIPES = ["ft+st", "3phase", "ft"]
PEER = "setfit"


def validation_macro_f1(records: list[dict[str, Any]]) -> dict[tuple, dict[int, float]]:
    """(dataset, regime, method) -> {seed: validation macro-F1 in %}."""
    groups: dict[tuple, dict[int, float]] = defaultdict(dict)
    for record in records:
        if record.get("validation_macro_f1") is not None:
            groups[(record["dataset"], str(record["regime"]), record["method"])][record["seed"]] = 100 * record["validation_macro_f1"]
    return groups


def best_recipe(validation: dict[tuple, dict[int, float]], dataset: str, regime: str) -> str | None:
    """The phasefit recipe with the highest mean validation macro-F1 in a cell (ties: the earlier in PHASEFIT_RECIPES)."""
    scored = [
        (statistics.mean(validation[(dataset, regime, m)].values()), -i, m) for i, m in enumerate(PHASEFIT_RECIPES) if validation.get((dataset, regime, m))
    ]
    return max(scored)[2] if scored else None


def multi_label_lines(records: list[dict[str, Any]], superseded: list[dict[str, Any]] | None = None) -> list[str]:
    """The GoEmotions table and verdicts from ``records``; a study judged on records since superseded reads those too."""
    studies = head_bias_lines(records + (superseded or []))
    study = load_study_rules()["multi_label_head_bias"]["name"]
    records = [r for r in records if study_column(r) != study]  # a study's arm is not a table column
    every = records + [r for r in superseded or [] if study_column(r) != study]
    if not records:
        return ["No multi-label run is recorded yet (`python -m benchmarks run --datasets goemotions ...` writes `results/multi_label/runs.jsonl`)."]
    at_default = [{**r, "method": f"{r['method']} at 0.5", "test": r["test_at_default_threshold"]} for r in records if r.get("test_at_default_threshold")]
    micro, macro = by_seed(records + at_default, "micro_f1"), by_seed(records + at_default, "macro_f1")
    micro_cells, macro_cells = summarise(micro), summarise(macro)
    keys = in_table_order({(d, r) for d, r, _ in macro})
    methods = [m for m in MULTI_LABEL_METHODS if any((d, r, m) in macro for d, r in keys)]
    methods += sorted({m for _, _, m in macro} - set(methods))
    lines = [
        "Test micro-F1 % / macro-F1 %, mean ± sample std over seeds (number of seeds). Regimes: at least N rows per label "
        "(a seeded draw, rarest label first), or `full`. FT keeps the checkpoint with the best validation micro-F1 and "
        "chooses its decision threshold on validation (one for all labels: the multi-label profile pins `global`, which its "
        "records ran with, though `per_label` is the library's default since the threshold study below); SetFit runs its one-vs-rest mode (a logistic regression per label), its "
        "threshold chosen on validation the same way (one for all labels, by micro-F1); `setfit at 0.5` is SetFit at its own cut.",
        "",
        *table_head(["dataset", "regime", *methods]),
    ]
    for dataset, regime in keys:
        row = [f"{cell(micro_cells.get((dataset, regime, m)))} / {cell(macro_cells.get((dataset, regime, m)))}" for m in methods]
        lines.append(f"| {dataset} | {regime} | " + " | ".join(row) + " |")
    validation = validation_macro_f1(records)
    lines += [
        "",
        "The best phasefit recipe per cell, chosen on validation macro-F1, against SetFit on test macro-F1 (paired by seed; "
        "issue 48's bar: at least SetFit's macro-F1 at 8 and at 64 per label):",
        "",
    ]
    for dataset, regime in keys:
        chosen = best_recipe(validation, dataset, regime)
        if chosen is None or (dataset, regime, PEER) not in macro:
            lines.append(f"- {dataset}, {regime}: no verdict yet ({'no phasefit recipe has run' if chosen is None else PEER + ' has not run'}).")
            continue
        outcome, difference, p_value, seeds = paired_verdict(macro[(dataset, regime, chosen)], macro[(dataset, regime, PEER)])
        if outcome is None:
            lines.append(f"- {dataset}, {regime}: {chosen} (chosen on validation); fewer than two seeds shared with {PEER}.")
            continue
        reached = "reaches" if difference >= 0 else "falls short of"
        lines.append(
            f"- {dataset}, {regime}: {chosen} (chosen on validation) {reached} {PEER}'s macro-F1: {difference:+.2f} points "
            f"paired over {seeds} seeds ({outcome}, p = {p_value:.2f})."
        )
    return [*lines, "", *threshold_scheme_lines(every), *studies]


def two_fold_comparison(record: dict[str, Any]) -> dict[str, dict[str, float]] | None:
    """The final phase's threshold_schemes_two_fold (st's where the recipe self-trains, else ft's), if the record has it."""
    stats = record.get("phase_stats") or {}
    for phase in ("st", "ft"):
        if "threshold_schemes_two_fold" in stats.get(phase, {}):
            return stats[phase]["threshold_schemes_two_fold"]
    return None


def paired_rule(differences: list[float], micro: float, metric: str, margin: float, compared: str) -> tuple[str, bool]:
    """A multi-label study's summary of its per-run gains, and whether its rule keeps the change (a mean gain of at
    least ``margin`` points, ahead in more runs than behind)."""
    ahead, behind = sum(d > 0 for d in differences), sum(d < 0 for d in differences)
    summary = f"{compared} mean {metric.replace('_', '-')} difference {statistics.mean(differences):+.2f} points (micro-F1 {micro:+.2f}), ahead in {ahead}, behind in {behind}"
    return summary, statistics.mean(differences) >= margin and ahead > behind


def threshold_scheme_lines(records: list[dict[str, Any]]) -> list[str]:
    """Issue 48's threshold study (profiles/studies.yaml, multi_label_threshold): per-label against global cuts, each
    chosen on half of validation and scored on the other half, over the phasefit runs that record it."""
    rule = load_study_rules()
    study, margin = rule["multi_label_threshold"], rule["keep_margin"]
    carrying = [(r, c) for r in records if r["method"] in PHASEFIT_RECIPES and (c := two_fold_comparison(r)) is not None]
    if not carrying:
        return ["- Threshold scheme (global or per label): no run records the two-fold comparison yet."]
    # The verdict reads the planned runs, the first to finish; runs recorded after it cannot move it.
    carrying.sort(key=lambda run: run[0].get("finished_at", ""))
    runs, later = carrying[: study["planned"]], carrying[study["planned"] :]
    metric, name, base = study["metric"], study["name"], study["base"]

    def gain(comparison: dict[str, dict[str, float]]) -> float:
        return 100 * (comparison[name][metric] - comparison[base][metric])

    differences = [gain(c) for _, c in runs]
    micro = statistics.mean(100 * (c[name]["micro_f1"] - c[base]["micro_f1"]) for _, c in runs)
    summary, kept = paired_rule(
        differences,
        micro,
        metric,
        margin,
        f"{name} against {base} thresholds, each chosen on half of validation and scored on the other half: over {len(runs)} run(s)",
    )
    if len(runs) < study["planned"]:
        return [f"- Threshold scheme: {summary}; {len(runs)} of {study['planned']} planned runs: **no verdict yet**."]
    verdict = f"**{name} becomes the default**" if kept else f"**{base} stays the default**"
    lines = [
        f"- Threshold scheme: {summary}: {verdict} (rule fixed before the runs: {name} at a mean gain of at least {margin} points, ahead in more runs than behind)."
    ]
    if later:
        after = statistics.mean(gain(c) for _, c in later)
        lines.append(
            f"- Threshold scheme, {len(later)} run(s) recorded after the verdict (not in it): mean {metric.replace('_', '-')} difference {after:+.2f} points."
        )
    return lines


def head_bias_ran(record: dict[str, Any]) -> str:
    """The MLP head's output-bias start a record ran with (records made before the option existed ran ``random``)."""
    return ((record.get("config") or {}).get("ft") or {}).get("head_bias", "random")


def head_bias_lines(records: list[dict[str, Any]]) -> list[str]:
    """Issue 48's head-bias study (profiles/studies.yaml, multi_label_head_bias): the MLP head's output bias at the
    labels' base rates against a random one, paired by (dataset, regime, seed) on the two-fold held-out score.

    An arm is its column (method and profile) run with its bias: once the prior became the default, the base column's
    new records run with the prior too, and the random-bias records it was judged on live in ``results/superseded/``."""
    rules = load_study_rules()
    study, margin = rules["multi_label_head_bias"], rules["keep_margin"]
    metric, scheme = study["metric"], study["scheme"]
    arms: dict[tuple[str, str], dict[tuple, dict[str, float]]] = {(study["name"], "prior"): {}, (study["base"], "random"): {}}
    for record in records:
        arm = arms.get((study_column(record), head_bias_ran(record)))
        if arm is not None and (comparison := two_fold_comparison(record)) is not None:
            arm[(record["dataset"], str(record["regime"]), record["seed"])] = {m: 100 * comparison[scheme][m] for m in (metric, "micro_f1")}
    name, base = arms[(study["name"], "prior")], arms[(study["base"], "random")]
    pairs = sorted(set(name) & set(base))
    if not pairs:
        return [f"- Head bias ({study['name']} against {study['base']}): no paired run yet."]
    differences = [name[key][metric] - base[key][metric] for key in pairs]
    micro = statistics.mean(name[key]["micro_f1"] - base[key]["micro_f1"] for key in pairs)
    summary, kept = paired_rule(
        differences,
        micro,
        metric,
        margin,
        f"{study['name']} against {study['base']} ({scheme} threshold chosen on half of validation, scored on the other half): over {len(pairs)} paired run(s)",
    )
    if len(pairs) < study["planned"]:
        return [f"- Head bias: {summary}; {len(pairs)} of {study['planned']} planned runs: **no verdict yet**."]
    verdict = "**the prior bias becomes the MLP head's default**" if kept else "**the random bias stays the default**"
    return [f"- Head bias: {summary}: {verdict} (rule fixed before the runs: a mean gain of at least {margin} points, ahead in more runs than behind)."]
