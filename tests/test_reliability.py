"""Fuzzed input files, disk-full and permission failures: only the project's own errors, nothing half-written."""

import errno
import os

import pandas as pd
import pytest
from conftest import toy_rows
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cli import fast_flags
from typer.testing import CliRunner

from phasefit.cli import app
from phasefit.data import load_data
from phasefit.errors import PhaseFitError

runner = CliRunner()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=400), suffix=st.sampled_from(["csv", "tsv", "jsonl", "json", "parquet", "txt"]))
def test_random_bytes_raise_only_project_errors(tmp_path, content, suffix):
    path = tmp_path / f"fuzz.{suffix}"
    path.write_bytes(content)
    try:
        load_data(path)
    except PhaseFitError:
        pass


cell = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(cell, cell), max_size=12), header=st.sampled_from(["text,label", "label,text", "a,b", "text", ""]))
def test_random_csv_raises_only_project_errors(tmp_path, rows, header):
    path = tmp_path / "fuzz.csv"
    body = "\n".join(",".join('"' + value.replace('"', '""') + '"' for value in row) for row in rows)
    path.write_text(header + "\n" + body, encoding="utf-8")
    try:
        data = load_data(path)
    except PhaseFitError:
        return
    assert len(data.train) >= 1 and len(data.classes) >= 2


@pytest.fixture()
def small_csv(tmp_path):
    path = tmp_path / "data.csv"
    pd.DataFrame(toy_rows({"sport": 12, "weather": 12})).to_csv(path, index=False)
    return path


def test_disk_full_while_saving_leaves_the_old_output_and_no_partial_model(tmp_path, tiny_model, small_csv, monkeypatch):
    output = tmp_path / "out"
    output.mkdir()
    (output / "keep.txt").write_text("earlier output")

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(args[-1]) if args else "")

    monkeypatch.setattr("phasefit.model.save_file", full_disk)
    result = runner.invoke(app, ["train", str(small_csv), "--recipe", "ft", "--output", str(output), "--overwrite", *fast_flags(tiny_model)])
    assert result.exit_code == 1 and "no space left" in result.output.lower()
    assert (output / "keep.txt").read_text() == "earlier output"
    assert sorted(p.name for p in tmp_path.iterdir() if "staging" in p.name) == []


def test_too_little_free_space_is_refused_before_training(tmp_path, tiny_model, small_csv, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9, 1000))
    result = runner.invoke(app, ["train", str(small_csv), "--output", str(tmp_path / "model"), *fast_flags(tiny_model)])
    assert result.exit_code == 2 and "MiB free" in result.output and not (tmp_path / "model").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_output_is_refused_before_training(tmp_path, tiny_model, small_csv):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    result = runner.invoke(app, ["train", str(small_csv), "--output", str(locked / "model"), *fast_flags(tiny_model)])
    assert result.exit_code == 2 and "permission denied" in result.output


def test_output_that_is_a_file_is_refused(tmp_path, tiny_model, small_csv):
    target = tmp_path / "a-file"
    target.write_text("x")
    result = runner.invoke(app, ["train", str(small_csv), "--output", str(target), *fast_flags(tiny_model)])
    assert result.exit_code == 2 and "is a file" in result.output
