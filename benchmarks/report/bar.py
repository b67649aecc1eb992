"""The best recipe's bar against the peers, its cost, and the which-recipe table (also written into the README)."""

from __future__ import annotations

import statistics
from pathlib import Path

from scipy.stats import binomtest

from .common import compare, in_table_order, paired_line, run_by_run, verdict, wall_seconds_by_run_key

PEERS = ("tuned-ft", "setfit")


BAR_REGIMES = ("8", "64")


BAR_SEEDS = {"8": 5, "64": 3}


def bar_lines(
    seeded,
    keys,
    challenger: str = "3phase+",
    peers: tuple[str, ...] = PEERS,
    seeds: dict[str, int] = BAR_SEEDS,
    sign_test_required: bool = True,
    paired: bool = False,
) -> list[str]:
    """Issue 28's bar, from the records: the challenger beats the better of the peers (tuned FT and SetFit, by mean)
    beyond the larger seed std in at least 5 cells, loses in none, and is ahead of each peer run by run with a
    two-sided sign test p < 0.05 (paired on the same dataset, regime and seed, hence the same labelled draw).
    With ``sign_test_required=False`` (issue 27's claim, one peer) the sign test is reported but does not decide.
    With ``paired`` (issue 45's bar) a cell is won or lost on the mean paired difference over the seeds both ran,
    with a two-sided paired t-test p < 0.05, instead of the seed spread."""
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
        which = f"the better peer ({best})" if len(peers) > 1 else best
        if paired:
            outcome, line = paired_line(mine, ran[best], dataset, regime, challenger, which)
            out.append(line)
        else:
            outcome = verdict(list(mine.values()), list(ran[best].values()))
            out.append(f"- {dataset}, {regime}: {challenger} {compare(list(mine.values()), list(ran[best].values()))} {which}.")
        if outcome:
            outcomes[outcome].append(f"{dataset}/{regime}")
    tests = []
    for peer in peers:
        ahead, behind, _ = run_by_run(seeded, cells, challenger, peer)
        p_value = binomtest(ahead, ahead + behind).pvalue if ahead + behind else 1.0
        tests.append((peer, ahead, behind, p_value))
    met = len(outcomes["beats"]) >= 5 and not outcomes["loses"] and (not sign_test_required or all(a > b and p < 0.05 for _, a, b, p in tests))
    # A cell with all its seeds keeps its verdict; one short of seeds, or not run yet, may still turn into a win.
    still_open = set(short) | {f"{d}/{r}" for d, r in unrun}
    settled_wins = [cell for cell in outcomes["beats"] if cell not in still_open]
    settled_losses = [cell for cell in outcomes["loses"] if cell not in still_open]
    reachable = len(settled_wins) + len(still_open)
    out_of_reach = (
        f" It can no longer be met with these cells: at most {reachable} win(s), {len(settled_wins)} in cells that have all their seeds"
        f" and {len(still_open)} open cell(s)."
        if reachable < 5 and not met
        else (f" It can no longer be met: {', '.join(settled_losses)} lost with all seeds in." if settled_losses else "")
    )
    rule = "at least 5 wins, no loss" + (", ahead of each peer with p < 0.05" if sign_test_required else "")
    seed_rule = ", ".join(f"{n} at {'8 per class' if r == '8' else r}" for r, n in seeds.items())
    summary = [
        f"- Over {sum(map(len, outcomes.values()))} cell(s) with every peer and two or more {'shared ' if paired else ''}seeds"
        f"{' (a win or a loss: paired t-test p < 0.05)' if paired else ' on each side'}: {challenger} beats "
        f"{'the better peer' if len(peers) > 1 else peers[0]} in "
        f"{len(outcomes['beats'])}, ties in {len(outcomes['ties'])}, loses in {len(outcomes['loses'])}"
        + (f" ({', '.join(outcomes['loses'])})" if outcomes["loses"] else "")
        + ".",
        *(f"- Run by run against {peer}: ahead in {a}, behind in {b} (two-sided sign test p = {p:.3f})." for peer, a, b, p in tests),
        f"- The bar ({rule}): **{'met' if met else 'not met'}**."
        + out_of_reach
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


WHICH_RECIPE_METHODS = ("ft+st", "3phase+", "3phase", "ft", "tuned-ft", "setfit")
# A method whose name now runs its successor (phasefit.recipes.ALIASES): its records stand in for the successor in a
# regime's row only until the successor has all its seeds on every dataset where the predecessor has them.
SUCCESSORS = {"3phase+": "ft+st"}


def gap_closed_lines(seeded, challenger: str = "ft+st", datasets: tuple[str, ...] = ("sst2", "ag_news"), regime: str = "8", capped=None) -> list[str]:
    """Issue 45's second bar: how much of the gap between tuned FT at 8 per class and full-data fine-tuning (tuned FT on
    the whole training split) the challenger closes at 8 per class, from the means over seeds; the bar is half.

    Where no uncapped full-data run exists, ``capped`` (seeded scores of tuned FT at full under profile full-capped: FT
    reads at most 20,000 texts per rate) stands in as a lower bound: "not met" against it holds against the uncapped reference too, "met"
    does not."""
    lines = []
    capped = capped or {}
    for dataset in datasets:
        cells = {"low": (dataset, regime, "tuned-ft"), "full": (dataset, "full", "tuned-ft"), "mine": (dataset, regime, challenger)}
        reference = seeded
        if not seeded.get(cells["full"]) and capped.get(cells["full"]):
            reference = {**seeded, cells["full"]: capped[cells["full"]]}
        missing = [f"{method} at {where}" for (_, where, method) in cells.values() if not reference.get((dataset, where, method))]
        if missing:
            lines.append(f"- {dataset}: not measured yet (no {', '.join(missing)}).")
            continue
        is_capped = reference is not seeded
        name = "full-data FT capped (profile full-capped, a lower bound)" if is_capped else "full-data FT"
        low, full, mine = (statistics.mean(reference[key].values()) for key in cells.values())
        if full <= low:
            lines.append(f"- {dataset}: {name} ({full:.2f}) is no better than tuned FT at {regime} per class ({low:.2f}): no gap to close.")
            continue
        share = (mine - low) / (full - low)
        if share < 0.5:
            verdict = "**not met**" + (" (it holds against the uncapped reference, whose accuracy is expected to be at least as high)" if is_capped else "")
        else:
            verdict = "**met against the capped reference only** (the uncapped run decides)" if is_capped else "**met**"
        lines.append(
            f"- {dataset}: tuned FT at {regime} per class {low:.2f}, {name} {full:.2f} ({len(reference[cells['full']])} seed(s)), "
            f"{challenger} at {regime} per class {mine:.2f}: it closes {share:.0%} of the gap (bar: at least half): {verdict}."
        )
    return lines


REGIME_WORDS = {"8": "about 8 per class", "64": "about 64 per class", "full": "thousands (a full training set)"}


def shared_datasets(methods: list[str], complete: dict[str, list[str]]) -> set[str]:
    return set.intersection(*(set(complete[m]) for m in methods))


def which_recipe_lines(accuracy, keys) -> list[str]:
    """The README's opening table: per regime, the method with the best mean test accuracy over the datasets on which
    every method in the row has all its seeds (5 at 8 per class, 3 at 64: the bar's), so that no method is averaged
    over easier data or a lucky first seed. A method with all its seeds on no dataset of the regime, or on so few that
    keeping it would narrow a row of two or more methods (alone or with the methods tied with it), is left out of the row
    (and named under the table). A predecessor's records (SUCCESSORS) leave a regime's row once its successor has all
    its seeds wherever they are."""
    lines = ["| labelled texts | pick | mean test accuracy % over the same datasets | datasets |", "|---|---|---|---|"]
    left_out, not_run = [], []
    succeeded: dict[str, list[str]] = {m: [] for m in SUCCESSORS}
    standing_in: dict[str, list[str]] = {m: [] for m in SUCCESSORS}
    for regime in ("8", "64", "full"):
        needed = BAR_SEEDS.get(regime, 1)
        complete = {m: [d for d, r in keys if r == regime and len(accuracy.get((d, r, m), [])) >= needed] for m in WHICH_RECIPE_METHODS}
        ran = {m for m in WHICH_RECIPE_METHODS if any(accuracy.get((d, r, m)) for d, r in keys if r == regime)}
        for predecessor, successor in SUCCESSORS.items():
            if complete[predecessor] and set(complete[predecessor]) <= set(complete[successor]):
                complete[predecessor] = []
                ran.discard(predecessor)
                succeeded[predecessor].append(regime)
        gone = {m for m in SUCCESSORS if regime in succeeded[m]}
        methods = [m for m in WHICH_RECIPE_METHODS if complete[m]]
        while len(methods) > 2:
            fewest = min(len(complete[m]) for m in methods)
            rest = [m for m in methods if len(complete[m]) > fewest]  # methods tied for the narrowest leave together
            if len(rest) < 2 or len(shared_datasets(rest, complete)) <= len(shared_datasets(methods, complete)):
                break
            methods = rest
        left_out += [f"{m} at {regime}" for m in WHICH_RECIPE_METHODS if m in ran and m not in methods]
        datasets = [d for d, r in keys if r == regime and all(d in complete[m] for m in methods)]
        if len(methods) < 2 or not datasets:
            continue
        not_run += [f"{m} at {regime}" for m in WHICH_RECIPE_METHODS if m not in ran and m not in gone]
        means = {m: statistics.mean(statistics.mean(accuracy[(d, regime, m)]) for d in datasets) for m in methods}
        ranked = sorted(means, key=lambda m: -means[m])
        for m in set(methods) & set(SUCCESSORS):
            standing_in[m].append(regime)
        lines.append(f"| {REGIME_WORDS[regime]} | `{ranked[0]}` | " + ", ".join(f"{m} {means[m]:.2f}" for m in ranked) + f" | {', '.join(datasets)} |")
    if len(lines) == 2:
        return ["Not measured yet."]
    notes = [
        f"Not in a row yet (fewer seeds than the row needs on every dataset): {', '.join(left_out)}." if left_out else "",
        f"No test run yet in a row's regime: {', '.join(not_run)}." if not_run else "",
        *(
            f"`{m}` ({SUCCESSORS[m]}'s predecessor; `--recipe {m}` now runs {SUCCESSORS[m]}): "
            + "; ".join(
                part
                for part in (
                    f"its records stand in at {' and '.join(standing_in[m])} until {SUCCESSORS[m]} has all its seeds" if standing_in[m] else "",
                    f"left the row at {' and '.join(succeeded[m])}, where {SUCCESSORS[m]} has them" if succeeded[m] else "",
                )
                if part
            )
            + "."
            for m in SUCCESSORS
            if standing_in[m] or succeeded[m]
        ),
    ]
    if any(notes):
        lines += ["", " ".join(note for note in notes if note)]
    return lines


WHICH_RECIPE_MARKERS = ("<!-- which-recipe: generated by python -m benchmarks report -->", "<!-- /which-recipe -->")


def write_readme_block(readme: Path, lines: list[str], markers: tuple[str, str] = WHICH_RECIPE_MARKERS) -> None:
    """Replace the block between the markers in the README with the lines (no-op when the markers are absent)."""
    text = readme.read_text(encoding="utf-8")
    start, end = markers
    if start not in text or end not in text:
        return
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(head + start + "\n" + "\n".join(lines) + "\n" + end + tail, encoding="utf-8")


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


NO_VALIDATION_SIDES = (
    ("ft+st (no validation)", "no validation", "ft+st"),
    ("tuned-ft (no validation)", "no validation", "tuned-ft"),
    ("ft+st (with validation)", "with", "ft+st"),
    ("tuned-ft (with validation)", "with", "tuned-ft"),
    ("setfit", "with", "setfit"),
)


def no_validation_lines(records, seeded) -> list[str]:
    """Issue 45's runs without a validation split (``records``, profile no-validation) beside the table's runs of the
    same draws (``seeded``: :func:`by_seed` of the main records), on test accuracy; each comparison paired by seed."""
    from .common import by_seed, cell, table_head

    alone = by_seed(records, "accuracy")
    keys = in_table_order({(d, r) for d, r, _ in alone})
    if not keys:
        return ["- No run yet."]
    source = {"no validation": alone, "with": seeded}
    lines = table_head(["dataset", "regime", *(name for name, _, _ in NO_VALIDATION_SIDES)])
    for dataset, regime in keys:
        row = [cell(list(source[which].get((dataset, regime, method), {}).values())) for _, which, method in NO_VALIDATION_SIDES]
        lines.append(f"| {dataset} | {regime} | " + " | ".join(row) + " |")
    lines.append("")
    challenger, tuned_alone, with_validation, _, setfit = NO_VALIDATION_SIDES
    for dataset, regime in keys:
        mine = alone.get((dataset, regime, challenger[2]), {})
        for name, which, method in (setfit, tuned_alone, with_validation):
            lines.append(paired_line(mine, source[which].get((dataset, regime, method), {}), dataset, regime, challenger[0], name)[1])
    return lines
