"""The benchmark's records: JSON Lines, one whole line per finished run, read back whole or not at all."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

# Records written before models were labelled by name carry the default model's folder name.
LEGACY_MODEL_LABELS = {"model": "all-MiniLM-L6-v2"}


def run_key(record: dict[str, Any]) -> tuple:
    model = LEGACY_MODEL_LABELS.get(record["model"], record["model"])
    return (record["dataset"], str(record["regime"]), record["method"], model, record["seed"], record["profile"])


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """The whole records of a JSON Lines file; a line cut by a crash is skipped (what it recorded is simply redone)."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def finished_runs(results: Path) -> set[tuple]:
    keys = set()
    for record in read_json_lines(results):
        try:
            keys.add(run_key(record))
        except KeyError:
            continue
    return keys


def append_record(results: Path, record: dict[str, Any]) -> None:
    """One write of one whole line, flushed and fsync'd: a crash never leaves half a record behind a whole one."""
    results.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True) + "\n"
    descriptor = os.open(results, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line.encode("utf-8"))
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
