"""The command line through typer's runner: round trip, and bad input that must fail cleanly."""

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import FAST, toy_rows
from typer.testing import CliRunner

from phasefit.cli import app, effective_batches
from phasefit.recipes import ALIASES, RECIPES, resolve

runner = CliRunner()


def fast_flags(model: str) -> list[str]:
    flags = ["--model", model, "--seed", "0", "--refit-on-all-labels", "never"]
    for phase, options in FAST.items():
        for key, value in options.items():
            flags += [f"--{phase}-{key.replace('_', '-')}", str(value)]
    return flags


def test_train_predict_evaluate_round_trip(toy_folder, tiny_model, tmp_path):
    output = tmp_path / "run"
    trained = runner.invoke(app, ["train", str(toy_folder), "--recipe", "cl+ft", "--output", str(output), *fast_flags(tiny_model)])
    assert trained.exit_code == 0, trained.output
    for name in ("metrics.json", "config.yaml", "confusion_matrix.png", "head.safetensors", "phasefit.json", "modules.json", "README.md"):
        assert (output / name).is_file(), name
    card = (output / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: sentence-transformers") and "base_model:" in card
    assert "`food`, `sport`, `weather`" in card and "pairs_per_example" in card and "| test |" in card
    assert (output / "learning_curves.png").is_file() and (output / "embeddings.png").is_file()
    reported = runner.invoke(app, ["report", str(output)])
    assert reported.exit_code == 0, reported.output
    page = (output / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "macro-F1" in page
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["recipe"] == "cl+ft" and metrics["test"]["n_examples"] == 30
    assert set(metrics["phase_stats"]["ft"]["curve"]) >= {"train_loss", "eval_loss"}
    config = yaml.safe_load((output / "config.yaml").read_text())
    assert config["cl"]["learning_rate"] == FAST["cl"]["learning_rate"] and config["recipe"] == "cl+ft"

    texts = tmp_path / "texts.txt"
    texts.write_text("the team won the match\nrain and snow today\n")
    predictions = tmp_path / "predictions.jsonl"
    predicted = runner.invoke(app, ["predict", str(output), str(texts), "--output", str(predictions), "--proba"])
    assert predicted.exit_code == 0, predicted.output
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert [row["text"] for row in rows] == ["the team won the match", "rain and snow today"]
    assert all(abs(sum(row["probabilities"].values()) - 1) < 1e-4 for row in rows)

    report = tmp_path / "eval.json"
    evaluated = runner.invoke(app, ["evaluate", str(output), str(toy_folder), "--json", str(report)])
    assert evaluated.exit_code == 0, evaluated.output
    scores = json.loads(report.read_text())
    assert scores["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert report.with_suffix(".png").is_file()
    # A single file is scored whole, under its own name; --split names a split only a folder has.
    whole = runner.invoke(app, ["evaluate", str(output), str(toy_folder / "test.jsonl")])
    assert whole.exit_code == 0, whole.output
    assert json.loads((output / "eval-test.json").read_text())["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    wrong = runner.invoke(app, ["evaluate", str(output), str(toy_folder), "--split", "dev"])
    assert wrong.exit_code != 0 and "--split dev" in wrong.output and "train, test" in wrong.output


def test_yaml_config_is_read_and_command_line_wins(toy_folder, tiny_model, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"recipe": "ft", "seed": 3, **FAST}))
    output = tmp_path / "run"
    result = runner.invoke(app, ["train", str(toy_folder), "--config", str(config), "--model", tiny_model, "--seed", "5", "--output", str(output)])
    assert result.exit_code == 0, result.output
    written = yaml.safe_load((output / "config.yaml").read_text())
    assert written["seed"] == 5 and written["recipe"] == "ft" and written["ft"]["head_size"] == FAST["ft"]["head_size"]


def _table(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _good_csv(tmp_path):
    return _table(tmp_path, "good.csv", pd.DataFrame(toy_rows({"sport": 12, "weather": 12})).to_csv(index=False))


BAD = {
    "missing file": (lambda p, m: ["train", str(p / "nope.csv"), "--model", m], "no such file"),
    "empty file": (lambda p, m: ["train", str(_table(p, "e.csv", "")), "--model", m], "empty"),
    "header only": (lambda p, m: ["train", str(_table(p, "h.csv", "text,label\n")), "--model", m], "no rows"),
    "missing column": (lambda p, m: ["train", str(_good_csv(p)), "--text-column", "body", "--model", m], "no column 'body'; the columns are 'text', 'label'"),
    "empty texts": (lambda p, m: ["train", str(_table(p, "t.csv", "text,label\na,x\n,y\nb,x\nc,y\n")), "--model", m], "empty text in column 'text' at rows 3"),
    "blank labels": (lambda p, m: ["train", str(_table(p, "l.csv", "text,label\na,x\nb,\nc,y\nd,y\n")), "--model", m], "at rows 3"),
    "single class": (lambda p, m: ["train", str(_table(p, "s.csv", "text,label\na,x\nb,x\n")), "--model", m], "single class"),
    "unknown recipe": (lambda p, m: ["train", str(_good_csv(p)), "--recipe", "4phase", "--model", m], "unknown recipe '4phase'"),
    "unknown option in config": (
        lambda p, m: ["train", str(_good_csv(p)), "--config", str(_table(p, "c.yaml", "dae:\n  epoch: 2\n")), "--model", m],
        "unknown option dae.epoch",
    ),
    "zero epochs": (lambda p, m: ["train", str(_good_csv(p)), "--ft-epochs", "0", "--model", m], "option ft.epochs must be > 0"),
    "negative batch size": (lambda p, m: ["train", str(_good_csv(p)), "--batch-size", "-4", "--model", m], "batch_size must be a whole number >= 1"),
    "zero ratio": (lambda p, m: ["train", str(_good_csv(p)), "--cl-max-ratio", "0", "--model", m], "cl.max_ratio must be >= 1"),
    "model path missing": (lambda p, m: ["train", str(_good_csv(p)), "--model", str(p / "no-model")], "no such folder"),
    "model dir of another tool": (
        lambda p, m: ["predict", m, str(_table(p, "x.txt", "hi\n"))],
        "not a phasefit model directory (missing phasefit.json, head.safetensors)",
    ),
    "non utf-8": (lambda p, m: ["train", str(_table(p, "u.csv", "text,label\ncaf\xe9,a\n".encode("latin-1"))), "--model", m], "not valid UTF-8"),
    "binary file": (lambda p, m: ["train", str(_table(p, "b.jsonl", b"\x00\xff\x00\x01")), "--model", m], "line 1 is not valid UTF-8"),
    "unknown file type": (lambda p, m: ["train", str(_table(p, "d.xlsx", "x")), "--model", m], "unknown file type '.xlsx'"),
    "null label in json lines": (
        lambda p, m: ["train", str(_table(p, "n.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": null}\n')), "--model", m],
        "empty or missing label in column 'label' at rows 2",
    ),
    "inconsistent hierarchy": (
        lambda p, m: [
            "train",
            str(_table(p, "h2.csv", "text,topic,sub\na,x,s1\nb,y,s1\nc,y,s2\nd,x,s3\n")),
            "--label-column",
            "topic",
            "--label-column",
            "sub",
            "--model",
            m,
        ],
        "'s1' in column 'sub' sits under 'x'",
    ),
    "unknown precision": (
        lambda p, m: ["train", str(_good_csv(p)), "--precision", "fp8", "--model", m],
        "option precision must be one of auto, bf16, fp16, fp32",
    ),
    "zero gradient accumulation": (
        lambda p, m: ["train", str(_good_csv(p)), "--gradient-accumulation", "0", "--model", m],
        "gradient_accumulation must be a whole number >= 1",
    ),
    "bad yaml": (lambda p, m: ["train", str(_good_csv(p)), "--config", str(_table(p, "bad.yaml", "a: [1,\n")), "--model", m], "not valid YAML"),
}


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 is refused only without a CUDA GPU")
def test_fp16_without_a_gpu_is_refused_before_loading(tmp_path, tiny_model):
    result = runner.invoke(app, ["train", str(_good_csv(tmp_path)), "--precision", "fp16", "--model", tiny_model, "--output", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "precision fp16 needs a CUDA GPU" in " ".join(result.output.split())
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_fails_with_a_specific_message_and_no_traceback(case, tmp_path, tiny_model):
    make_args, message = BAD[case]
    output = tmp_path / "out"
    output.mkdir()
    (output / "keep.txt").write_text("earlier output")
    args = make_args(tmp_path, tiny_model)
    if args[0] == "train":
        args += ["--output", str(output), "--overwrite"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output
    assert (output / "keep.txt").read_text() == "earlier output"


def test_non_empty_output_is_not_overwritten_without_the_flag(toy_folder, tiny_model, tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    (output / "keep.txt").write_text("earlier output")
    result = runner.invoke(app, ["train", str(toy_folder), "--output", str(output), *fast_flags(tiny_model)])
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert (output / "keep.txt").read_text() == "earlier output"


def test_unseen_test_labels_are_reported_by_name(tmp_path, tiny_model):
    folder = tmp_path / "d"
    folder.mkdir()
    pd.DataFrame(toy_rows({"sport": 10, "weather": 10})).to_json(folder / "train.jsonl", orient="records", lines=True)
    pd.DataFrame(toy_rows({"sport": 3, "food": 2})).to_json(folder / "test.jsonl", orient="records", lines=True)
    result = runner.invoke(app, ["train", str(folder), "--output", str(tmp_path / "o"), *fast_flags(tiny_model)])
    assert result.exit_code == 2 and "'food'" in result.output


def test_recipes_command_lists_all_eight():
    result = runner.invoke(app, ["recipes"])
    assert result.exit_code == 0
    for name in ("3phase", "joint", "dae+ft", "cl+ft", "extra-imb", "no-imb", "ft", "ft+st"):
        assert name in result.output


def _train_ok(tmp_path, tiny_model, csv_text: str, *extra: str):
    data = _table(tmp_path, "data.csv", csv_text)
    result = runner.invoke(app, ["train", str(data), "--output", str(tmp_path / "o"), "--recipe", "3phase", *fast_flags(tiny_model), *extra])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split()), json.loads((tmp_path / "o" / "metrics.json").read_text())


def test_a_class_with_one_example_still_trains_all_three_phases(tmp_path, tiny_model):
    rows = pd.DataFrame(toy_rows({"sport": 20, "weather": 20}) + toy_rows({"food": 1}, seed=9))
    output, report = _train_ok(tmp_path, tiny_model, rows.to_csv(index=False))
    assert report["phases"] == ["dae", "cl", "ft"] and report["phase_stats"]["cl"]["pairs"] > 0


def test_numeric_labels_and_duplicate_rows_train_with_a_note(tmp_path, tiny_model):
    rows = pd.DataFrame(toy_rows({"sport": 12, "weather": 12}))
    rows["label"] = rows["label"].map({"sport": 0, "weather": 1})
    rows = pd.concat([rows, rows.head(3)])
    output, report = _train_ok(tmp_path, tiny_model, rows.to_csv(index=False))
    assert "duplicate training rows" in output
    assert PhaseFitModelLabels(tmp_path / "o") == ["0", "1"]


def test_very_long_texts_are_truncated_with_a_warning(tmp_path, tiny_model):
    rows = pd.DataFrame(toy_rows({"sport": 12, "weather": 12}))
    rows.loc[0, "text"] = " ".join(["team"] * 500)
    output, report = _train_ok(tmp_path, tiny_model, rows.to_csv(index=False), "--max-length", "32")
    assert "max_length 32 tokens truncates" in output and "of train" in output


def PhaseFitModelLabels(directory):
    return json.loads((directory / "phasefit.json").read_text())["labels"]


def test_report_to_tensorboard_logs_every_phase(toy_folder, tiny_model, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    output = tmp_path / "run"
    result = runner.invoke(
        app,
        ["train", str(toy_folder), "--recipe", "3phase", "--output", str(output), "--report-to", "tensorboard", *fast_flags(tiny_model), "--dae-epochs", "3"],
    )
    assert result.exit_code == 0, result.output
    logs = tmp_path / "run-logs"
    assert sorted(p.name for p in logs.iterdir()) == ["1-dae", "2-cl", "3-ft"]
    tags = {}
    for phase in ("1-dae", "3-ft"):
        events = EventAccumulator(str(logs / phase))
        events.Reload()
        tags[phase] = set(events.Tags()["scalars"])
    assert {"train/loss", "train/learning_rate"} <= tags["1-dae"]
    assert {"eval/loss", "eval/accuracy"} <= tags["3-ft"]


def test_unknown_report_target_is_named(toy_folder, tiny_model, tmp_path):
    result = runner.invoke(app, ["train", str(toy_folder), "--report-to", "wandb", "--output", str(tmp_path / "o"), *fast_flags(tiny_model)])
    assert result.exit_code == 2 and "report_to must be a list of tensorboard, mlflow" in " ".join(result.output.split())


def test_tune_stores_a_resumable_study_and_writes_a_config_train_accepts(toy_folder, tiny_model, tmp_path):
    pytest.importorskip("optuna")
    import optuna

    study, best = tmp_path / "study.sqlite", tmp_path / "best.yaml"
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(yaml.safe_dump({**FAST, "dae": {**FAST["dae"], "max_texts": 40}}))
    args = ["tune", str(toy_folder), "--recipe", "cl+ft", "--model", tiny_model, "--config", str(fixed), "--study", str(study), "--output", str(best)]
    first = runner.invoke(app, [*args, "--trials", "2"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, [*args, "--trials", "3"])
    assert second.exit_code == 0, second.output
    assert len(optuna.load_study(study_name="phasefit", storage=f"sqlite:///{study}").trials) == 3
    chosen = yaml.safe_load(best.read_text())
    assert chosen["recipe"] == "cl+ft" and "learning_rate" in chosen["cl"] and chosen["cl"]["batch_size"] == chosen["ft"]["batch_size"]
    trained = runner.invoke(app, ["train", str(toy_folder), "--config", str(best), "--output", str(tmp_path / "run")])
    assert trained.exit_code == 0, trained.output


def test_onnx_export_matches_pytorch_probabilities(toy_folder, tiny_model, tmp_path):
    pytest.importorskip("onnxruntime")
    import numpy as np

    from phasefit import PhaseFitModel
    from phasefit.deploy.export import onnx_predict_proba

    output = tmp_path / "run"
    assert runner.invoke(app, ["train", str(toy_folder), "--recipe", "cl+ft", "--output", str(output), *fast_flags(tiny_model)]).exit_code == 0
    exported = runner.invoke(app, ["export", str(output), "--format", "onnx", "--output", str(tmp_path / "onnx")])
    assert exported.exit_code == 0, exported.output
    model = PhaseFitModel.from_pretrained(output)
    for texts in (
        ["rain"],
        ["the team won the match today and the coach was very happy with it", "pizza", "snow and cold wind in the forecast for today", "a", "soup"],
    ):
        assert np.abs(onnx_predict_proba(tmp_path / "onnx", texts) - model.predict_proba(texts)).max() < 1e-4
    assert json.loads((tmp_path / "onnx" / "phasefit_onnx.json").read_text())["labels"] == model.labels

    quantized = runner.invoke(app, ["export", str(output), "--format", "onnx", "--quantize", "int8", "--output", str(tmp_path / "int8")])
    assert quantized.exit_code == 0, quantized.output
    meta = json.loads((tmp_path / "int8" / "phasefit_onnx.json").read_text())
    assert meta["quantization"] == "int8" and not (tmp_path / "int8" / "fp32.onnx").exists()
    import onnx

    graph = onnx.load(str(tmp_path / "int8" / "model.onnx")).graph
    assert any(node.op_type in {"DynamicQuantizeLinear", "MatMulInteger"} for node in graph.node)
    texts = [row["text"] for row in toy_rows({"sport": 10, "weather": 10, "food": 10}, seed=9)]
    agreement = np.mean(np.argmax(onnx_predict_proba(tmp_path / "int8", texts), 1) == np.argmax(model.predict_proba(texts), 1))
    assert agreement >= 0.9
    assert runner.invoke(app, ["export", str(output), "--quantize", "int4", "--output", str(tmp_path / "x")]).exit_code == 2


def test_report_to_mlflow_logs_each_phase_to_a_local_store(toy_folder, tiny_model, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    result = runner.invoke(
        app,
        [
            "train",
            str(toy_folder),
            "--recipe",
            "cl+ft",
            "--output",
            str(tmp_path / "run"),
            "--report-to",
            "mlflow",
            *fast_flags(tiny_model),
            "--cl-epochs",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    client = MlflowClient(store)
    runs = client.search_runs([experiment.experiment_id for experiment in client.search_experiments()])
    assert len(runs) == 2
    logged = set().union(*(run.data.metrics for run in runs))
    assert {"loss", "learning_rate", "eval_loss", "eval_accuracy"} <= logged, logged


@pytest.mark.parametrize("name", [*RECIPES, *ALIASES])
def test_the_effective_batch_line_names_every_phase_of_every_recipe(name):
    config, recipe = resolve({"recipe": name})
    line = effective_batches(recipe, config)
    assert [part.split()[0] for part in line.split(", ")] == [step.phase if step.phase != "st" else "st's" for step in recipe.steps]


def test_the_recommended_recipe_trains_from_the_command_line(toy_folder, tiny_model, tmp_path):
    # ft+st is the which-recipe table's pick at 8 per class; its st phase has no batch of its own (its students use FT's),
    # so the options that set every phase's batch leave it alone.
    output = tmp_path / "run"
    result = runner.invoke(
        app,
        ["train", str(toy_folder), "--recipe", "ft+st", "--samples-per-class", "4", "--st-per-class", "4", "--st-confidence", "0", "--output", str(output)]
        + fast_flags(tiny_model)
        + ["--batch-size", "8", "--gradient-accumulation", "2"],
    )
    assert result.exit_code == 0, result.output
    assert "ft 16x2x1 = 32, st's students as ft" in " ".join(result.output.split())  # --ft-batch-size 16 (fast_flags) wins over --batch-size
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["recipe"] == "ft+st" and {"ft", "st"} <= set(metrics["phase_stats"])
