"""The studies that chose on validation: phase budgets, components and held-out validation; their rules are data in profiles/studies.yaml."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from scipy.stats import binomtest

from .common import by_profile_and_seed, compare, in_table_order, load_study_rules, paired_counts, paired_runs, paired_values, study_column, summarise, table


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
        "Both cap phase 1 at 2,000 texts and validation at 500 rows, as `cpu` did then; FT is the same in both (ft runs once, under `val-old`). "
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


# The rules are data (profiles/studies.yaml), each committed before its runs: see the comments there.
RULES = load_study_rules()
COMPONENTS = [(rule["name"], rule["base"], rule["what"]) for rule in RULES["components"]]
KEEP_MARGIN = float(RULES["keep_margin"])


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


HELD_OUT_COMPONENTS = [(rule["name"], rule["base"], rule["what"]) for rule in RULES["held_out_components"]]
# A study with a planned number of paired runs gets no verdict before all of them are in.
PLANNED_PAIRS = {(rule["name"], rule["base"]): int(rule["planned"]) for rule in RULES["held_out_components"] if "planned" in rule}
HELD_OUT_PEERS = [(rule["name"], rule["peer"]) for rule in RULES["held_out_peers"]]


def held_out_decisions(seeded: dict[tuple, dict[int, float]]) -> list[str]:
    """Each component of HELD_OUT_COMPONENTS kept at a mean held-out gain of KEEP_MARGIN points, ahead in more paired runs than behind."""
    lines = []
    for name, base, what in HELD_OUT_COMPONENTS:
        pairs = paired_values(seeded, name, base)
        if not pairs:
            continue
        difference = statistics.mean(new - old for new, old in pairs)
        ahead, behind = sum(new > old for new, old in pairs), sum(new < old for new, old in pairs)
        planned = PLANNED_PAIRS.get((name, base), 0)
        if len(pairs) < planned:
            lines.append(
                f"- Component {name} ({what}) against {base}: {len(pairs)} of its {planned} planned paired runs so far (mean held-out "
                f"difference {difference:+.2f} points, ahead in {ahead}, behind in {behind}): **no verdict yet**."
            )
            continue
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
        "(SetFit), `held-out-plus` (3phase+'s FT; with method ft+st, ft+st's defaults), `held-out-plus-self` (the same with one round of "
        "self-training inside FT, before the st phase existed), `held-out-st-scale` (ft+st with the pool at scale; see profiles/studies.yaml).",
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
            gaps[study_column(record)].append(100 * record["validation_accuracy"] - held_out_accuracy(record))
    if gaps:
        shown = ", ".join(f"{name} {statistics.mean(values):+.2f} ({len(values)} runs)" for name, values in sorted(gaps.items()))
        lines.append(f"- Chosen-on part minus held-out part, mean over runs (points): {shown}.")
    return lines


CHEAPER = [(rule["name"], rule["base"], rule["what"]) for rule in RULES["cheaper"]]
CHEAPER_MARGIN = float(RULES["cheaper_margin"])


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
