"""One self-contained HTML page for a run folder: scores, phase times, options and every picture inline."""

from __future__ import annotations

import base64
import html
import json
import tempfile
from pathlib import Path

from ..errors import ModelFilesError
from ..metrics import score_columns

PICTURES = [
    ("confusion_matrix.png", "Confusion matrix"),
    ("learning_curves.png", "Learning curves per phase"),
    ("embeddings.png", "Validation embeddings before training and after each phase"),
]


def build_html_report(run_dir: str | Path) -> str:
    run_dir = Path(run_dir)
    metrics_file = run_dir / "metrics.json"
    if not metrics_file.is_file():
        raise ModelFilesError(f"{run_dir}: no metrics.json; is it a folder written by `phasefit train`?")
    report = json.loads(metrics_file.read_text(encoding="utf-8"))
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>phasefit run</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}img{max-width:100%}pre{background:#f6f6f6;padding:1em}</style></head><body>",
        f"<h1>phasefit run: {html.escape(run_dir.name)}</h1>",
        f"<p>Recipe <b>{html.escape(str(report.get('recipe')))}</b>: {' → '.join(map(html.escape, report.get('phases', [])))}</p>",
    ]
    columns = score_columns(report.get("test") or report.get("validation") or {})
    parts.append("<h2>Scores</h2><table><tr><th>split</th>" + "".join(f"<th>{title}</th>" for _, title in columns) + "<th>examples</th></tr>")
    for split in ("validation", "test"):
        scores = report.get(split)
        if scores:
            parts.append(f"<tr><td>{split}</td>" + "".join(f"<td>{scores[k]:.4f}</td>" for k, _ in columns) + f"<td>{scores['n_examples']}</td></tr>")
    parts.append("</table><h2>Wall time per phase</h2><table><tr><th>phase</th><th>seconds</th><th>cached</th></tr>")
    for phase, seconds in report.get("phase_seconds", {}).items():
        parts.append(f"<tr><td>{html.escape(phase)}</td><td>{seconds:.1f}</td><td>{'yes' if phase in report.get('cached_phases', []) else ''}</td></tr>")
    parts.append("</table>")
    for name, title in PICTURES + [(p.name, f"Evaluation: {p.stem}") for p in sorted(run_dir.glob("eval-*.png"))]:
        drawn = _drawn_curves(run_dir) if name == "learning_curves.png" else None
        if drawn is None and not (run_dir / name).is_file():
            continue
        encoded = base64.b64encode(drawn or (run_dir / name).read_bytes()).decode("ascii")
        parts.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(name)}' src='data:image/png;base64,{encoded}'>")
    notes = report.get("data_notes", [])
    if notes:
        parts.append("<h2>Data</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    config = run_dir / "config.yaml"
    if config.is_file():
        parts.append(f"<h2>Options</h2><pre>{html.escape(config.read_text(encoding='utf-8'))}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _drawn_curves(run_dir: Path) -> bytes | None:
    """The learning curves drawn afresh from the run's ``curves.jsonl`` (None when it has none)."""
    from ..pipeline import CURVES_FILE
    from .plots import curves_from_records, plot_learning_curves

    path = run_dir / CURVES_FILE
    if not path.is_file():
        return None
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    curves = curves_from_records(records)
    with tempfile.TemporaryDirectory() as folder:
        drawn = plot_learning_curves({phase: {"curve": curve} for phase, curve in curves.items()}, Path(folder) / "curves.png")
        return drawn.read_bytes() if drawn else None
