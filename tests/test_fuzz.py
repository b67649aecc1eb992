"""Property-based fuzzing (Hypothesis) of every way in: configs, command-line arguments, data files, predict inputs.

The property: the command succeeds, or it ends with a message and a non-zero exit code (2 for a
user error): never a traceback; and a failed run never changes an output folder that was there.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import toy_rows
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from test_cli import fast_flags
from typer.testing import CliRunner

from phasefit.cli import app
from phasefit.config import PHASE_CONFIGS, RunConfig
from phasefit.errors import ConfigError
from phasefit.recipes import RECIPES, resolve

runner = CliRunner()
SLOW_SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

RUN_OPTIONS = [name for name in RunConfig.__dataclass_fields__ if name != "phases"]
PHASE_OPTIONS = {phase: list(cls.__dataclass_fields__) for phase, cls in PHASE_CONFIGS.items()}
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["none", "1e-3", "true", "-1", "0", "lots", "3phase", "auto", "bf16"]),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=5), scalars, max_size=2))


@st.composite
def configs(draw) -> dict:
    options = draw(st.dictionaries(st.one_of(st.sampled_from(RUN_OPTIONS), st.text(max_size=8)), values, max_size=4))
    for phase in draw(st.lists(st.sampled_from(list(PHASE_CONFIGS)), max_size=3, unique=True)):
        keys = st.one_of(st.sampled_from(PHASE_OPTIONS[phase]), st.text(max_size=8))
        options[phase] = draw(st.one_of(st.dictionaries(keys, values, max_size=4), values))
    if draw(st.booleans()):
        options["recipe"] = draw(st.one_of(st.sampled_from(list(RECIPES)), values, st.fixed_dictionaries({"phases": st.lists(values, max_size=3)})))
    return options


@settings(max_examples=400, deadline=None)
@given(configs())
@example({"recipe": "ft+st"})
@example({"recipe": {"phases": ["ft", "st", "st"]}})
def test_any_config_resolves_or_is_a_config_error(options):
    try:
        config, recipe = resolve(options)
    except ConfigError as error:
        assert str(error)
    else:
        after_ft = recipe.phases[recipe.phases.index("ft") + 1 :]
        assert recipe.phases.count("ft") == 1 and set(after_ft) <= {"st"}, recipe.phases
        assert set(config.phases) == set(PHASE_CONFIGS)


def _folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _assert_clean(result) -> None:
    """Success, or an ending with a message and a non-zero code; never an uncaught exception."""
    event(f"exit code {result.exit_code}")
    assert result.exit_code in (0, 1, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    if result.exit_code:
        assert result.output.strip(), "a failure says why"


# Values that fail fast or train quickly; never a budget that would make a run long.
FLAG_VALUES = {
    "--recipe": ["3phase", "ft", "joint", "nope", ""],
    "--batch-size": ["0", "-3", "x", "4", "99999999"],
    "--max-length": ["4", "100000", "32", "abc"],
    "--precision": ["fp16", "bf16", "fp32", "half", "auto"],
    "--samples-per-class": ["0", "3", "1000", "-1"],
    "--seed": ["-1", "1", "1.5"],
    "--dae-deletion-ratio": ["1", "0.3", "-0.1", "nan"],
    "--cl-max-ratio": ["0.5", "20", "inf"],
    "--ft-head-size": ["0", "8"],
    "--ft-metric": ["loss", "f1", "macro_f1"],
    "--ft-learning-rate-grid": ["1e-3", "x,1", ""],
    "--dae-lr-scheduler": ["cosine", "exp"],
    "--label-column": ["label", "missing"],
    "--text-column": ["text", "nope"],
    "--unseen-test-labels": ["drop", "keep"],
    "--bogus-flag": ["1"],
}


@SLOW_SETTINGS
@given(
    st.lists(st.sampled_from(list(FLAG_VALUES)), max_size=3, unique=True).flatmap(
        lambda flags: st.tuples(*[st.sampled_from(FLAG_VALUES[flag]).map(lambda value, flag=flag: (flag, value)) for flag in flags])
    ),
    st.booleans(),
)
def test_any_train_command_line_succeeds_or_fails_cleanly(toy_folder, tiny_model, tmp_path, chosen, into_existing):
    output = tmp_path / f"out-{hashlib.md5(repr(chosen).encode()).hexdigest()[:8]}"
    if into_existing:
        output.mkdir(exist_ok=True)
        (output / "keep.txt").write_text("earlier work")
    before = _folder_digest(output) if output.exists() else None
    flags = [item for pair in chosen for item in pair]
    result = runner.invoke(
        app,
        [
            "train",
            str(toy_folder),
            *fast_flags(tiny_model),
            "--output",
            str(output),
            *flags,
            *(["--overwrite"] if into_existing and "--recipe" in flags else []),
        ],
    )
    _assert_clean(result)
    if result.exit_code and before is not None:
        assert _folder_digest(output) == before


TEXT_PIECES = st.one_of(
    st.text(max_size=30),
    st.just(""),
    st.just(" " * 5),
    st.just("word " * 4000),
    st.just("\x00\x01"),
    st.just("é ü 中文 🙂"),
)


@st.composite
def data_files(draw) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from([".jsonl", ".csv", ".tsv", ".json", ".txt", ".parquet"]))
    rows = toy_rows({"sport": 6, "weather": 6}, seed=draw(st.integers(0, 5)))
    labels = st.one_of(st.sampled_from(["sport", "weather"]), st.integers(0, 2), st.none(), st.just(""), st.floats(allow_nan=True), st.booleans())
    for row in draw(st.lists(st.sampled_from(range(len(rows))), max_size=4, unique=True)):
        rows[row] = {"text": draw(st.one_of(TEXT_PIECES, st.none(), st.integers())), "label": draw(labels)}
    kind = draw(st.sampled_from(["rows", "rows", "empty", "bytes", "latin1", "not-a-table"]))
    if kind == "empty":
        return suffix, b""
    if kind == "bytes":
        return suffix, draw(st.binary(max_size=200))
    if kind == "not-a-table":
        return suffix, b"[1, 2, 3]\n" if suffix in {".json", ".jsonl"} else b"just,one\n"
    if suffix in {".csv", ".tsv"}:
        import pandas as pd

        text = pd.DataFrame(rows).to_csv(index=False, sep="\t" if suffix == ".tsv" else ",")
    elif suffix == ".json":
        text = json.dumps(rows)
    else:
        text = "\n".join(json.dumps(row) for row in rows)
    return suffix, text.encode("latin-1", errors="replace") if kind == "latin1" else text.encode("utf-8")


@SLOW_SETTINGS
@given(data_files())
def test_any_data_file_trains_or_fails_cleanly(tiny_model, tmp_path, data_file):
    suffix, content = data_file
    path = tmp_path / f"data-{hashlib.md5(content).hexdigest()[:8]}{suffix}"
    path.write_bytes(content)
    result = runner.invoke(app, ["train", str(path), *fast_flags(tiny_model), "--recipe", "ft", "--output", str(tmp_path / f"out-{path.stem}")])
    _assert_clean(result)


@pytest.fixture(scope="module")
def trained_model(tiny_model, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz-model")
    data = folder / "train.jsonl"
    data.write_text("\n".join(json.dumps(row) for row in toy_rows({"sport": 10, "weather": 10}, seed=2)))
    output = folder / "model"
    result = runner.invoke(app, ["train", str(data), *fast_flags(tiny_model), "--recipe", "ft", "--output", str(output)])
    assert result.exit_code == 0, result.output
    return output


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(
    st.one_of(st.binary(max_size=300), st.lists(TEXT_PIECES, max_size=5).map(lambda lines: "\n".join(lines).encode("utf-8"))),
    st.sampled_from([".txt", ".csv", ".jsonl", ".parquet"]),
    st.booleans(),
)
def test_any_predict_input_is_labelled_or_fails_cleanly(trained_model, tmp_path, content, suffix, proba):
    path = tmp_path / f"input-{hashlib.md5(content).hexdigest()[:8]}{suffix}"
    path.write_bytes(content)
    result = runner.invoke(app, ["predict", str(trained_model), str(path), *(["--proba"] if proba else [])])
    _assert_clean(result)
