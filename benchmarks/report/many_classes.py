"""Issue 49's bar: the best recipe against FastFit wherever FastFit ran, and against FastFit and SetFit on CLINC150."""

from __future__ import annotations

from .bar import BAR_REGIMES
from .common import paired_line

MANY_CLASSES_DATASET = "clinc150"


def fastfit_bar_lines(seeded, keys, challenger: str = "ft+st", peer: str = "fastfit", dataset: str = MANY_CLASSES_DATASET) -> list[str]:
    """Two parts, both paired on the seeds both sides ran (a win or a loss: paired t-test p < 0.05): the challenger is
    not behind ``peer`` in any cell where both ran, and on ``dataset`` at 8 per class it beats ``peer`` and SetFit."""
    cells = [(d, r) for d, r in keys if r in BAR_REGIMES and seeded.get((d, r, peer))]
    if not cells:
        return [f"- No {peer} runs on test yet."]
    out, behind, judged, unrun = [], [], [], []
    for cell_dataset, regime in cells:
        if not seeded.get((cell_dataset, regime, challenger)):
            unrun.append(f"{cell_dataset}/{regime}")
            continue
        outcome, line = paired_line(seeded[(cell_dataset, regime, challenger)], seeded[(cell_dataset, regime, peer)], cell_dataset, regime, challenger, peer)
        out.append(line)
        if outcome:
            judged.append(f"{cell_dataset}/{regime}")
        if outcome == "loses":
            behind.append(f"{cell_dataset}/{regime}")
    summary = [
        f"- Not behind {peer} in any cell where both ran: over {len(judged)} judged cell(s) {challenger} loses in {len(behind)}"
        + (f" ({', '.join(behind)})" if behind else "")
        + f": **{'met so far' if judged and not behind else 'not met' if behind else 'not judged yet'}**."
        + (f" Cells where {peer} ran and {challenger} has not: {', '.join(unrun)}." if unrun else "")
    ]
    many = []
    for other in (peer, "setfit"):
        if seeded.get((dataset, "8", challenger)) and seeded.get((dataset, "8", other)):
            many.append(paired_line(seeded[(dataset, "8", challenger)], seeded[(dataset, "8", other)], dataset, "8", challenger, other))
    beats_both = len(many) == 2 and all(outcome == "beats" for outcome, _ in many)
    summary.append(
        f"- On {dataset} at 8 per class {challenger} beats {peer} and setfit: "
        + ("**met**." if beats_both else "**not met**." if len(many) == 2 and all(outcome for outcome, _ in many) else "not judged yet.")
        + ("" if len(many) == 2 else f" ({challenger}, {peer} and setfit must all have run there.)")
    )
    return summary + out + [line for _, line in many if line not in out]


IMBALANCED_CELL = ("clinc150-imbalanced", "full")


def imbalanced_cell_lines(seeded, cell: tuple[str, str] = IMBALANCED_CELL, recipe: str = "3phase", against: tuple[str, ...] = ("no-imb", "ft")) -> list[str]:
    """Issue 49's imbalanced full-data cell: 3phase against its run without the imbalance correction (no-imb) and against
    plain FT, paired on the seeds both ran, where the correction has something to correct."""
    dataset, regime = cell
    if not seeded.get((dataset, regime, recipe)):
        ran = [method for method in against if seeded.get((dataset, regime, method))]
        return [f"- {dataset}, {regime}: no {recipe} run yet" + (f" ({', '.join(ran)} ran)." if ran else ".")]
    return [paired_line(seeded[(dataset, regime, recipe)], seeded.get((dataset, regime, other), {}), dataset, regime, recipe, other)[1] for other in against]
