"""Data-parallel training: `torchrun` with two CPU processes (gloo) against one process with the same effective batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import toy_rows

from phasefit import RECIPES, PhaseFitModel
from phasefit.metrics import classification_metrics

HERE = Path(__file__).resolve().parent
OPTIONS = {
    "seed": 0,
    "snapshot_examples": 0,
    "refit_on_all_labels": "never",  # one pass compared with one pass (the refit is tested on its own)
    "dae": {"epochs": 2, "learning_rate": 2e-3, "min_steps": 0},
    "cl": {"epochs": 2, "learning_rate": 2e-3, "pairs_per_example": 4, "min_steps": 0},
    "joint": {"epochs": 2, "learning_rate": 2e-3, "pairs_per_example": 4, "min_steps": 0},
    "ft": {"epochs": 30, "min_steps": 0, "learning_rate": 1e-3, "head_learning_rate": 5e-3, "head_size": 32, "patience": 5},
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(arguments: list[str], cwd: Path) -> None:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(arguments, cwd=cwd, env=environment, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def runs(tiny_model, tmp_path_factory) -> dict[str, Path]:
    """One process at batch 16; two processes at batch 8 each (audited); one process with another seed (the spread)."""
    root = tmp_path_factory.mktemp("ddp")
    data = root / "toy"
    data.mkdir()
    pd.DataFrame(toy_rows({"sport": 60, "weather": 40, "food": 20}, seed=1)).to_json(data / "train.jsonl", orient="records", lines=True)
    pd.DataFrame(toy_rows({"sport": 20, "weather": 20, "food": 20}, seed=2)).to_json(data / "test.jsonl", orient="records", lines=True)
    (root / "options.yaml").write_text(yaml.safe_dump({**OPTIONS, "model": tiny_model}))
    train = ["train", "toy", "--config", "options.yaml"]
    _run([sys.executable, "-m", "phasefit", *train, "--batch-size", "16", "-o", "one"], root)
    _run([sys.executable, "-m", "phasefit", *train, "--batch-size", "16", "--seed", "1", "-o", "other-seed"], root)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2", "--master-port", str(_free_port())]
    _run(
        [
            *launcher,
            str(HERE / "audited_phasefit.py"),
            str(root / "writes"),
            *train,
            "--batch-size",
            "8",
            "-o",
            "two",
            "--cache-dir",
            "cache",
            "--report-to",
            "tensorboard",
        ],
        root,
    )
    return {"root": root, "one": root / "one", "two": root / "two", "other": root / "other-seed"}


def _stats(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def test_two_processes_train_3phase_like_one_process(runs):
    one, two = _stats(runs["one"]), _stats(runs["two"])
    for stats in (one, two):
        assert stats["phases"] == ["dae", "cl", "ft"]
        for phase in ("dae", "cl"):
            assert stats["phase_stats"][phase]["last_logged_loss"] < stats["phase_stats"][phase]["first_logged_loss"]
            assert stats["phase_stats"][phase]["effective_batch_size"] == 16
        validation_loss = [value for _, value in stats["phase_stats"]["ft"]["curve"]["eval_loss"]]
        assert validation_loss[-1] < validation_loss[0]
    # The same batches, split over two ranks: the same optimiser steps and nearly the same losses.
    for phase in ("dae", "cl"):
        assert two["phase_stats"][phase]["steps"] == one["phase_stats"][phase]["steps"]
        assert two["phase_stats"][phase]["first_logged_loss"] == pytest.approx(one["phase_stats"][phase]["first_logged_loss"], rel=0.05)
    first_validation_loss = {name: stats["phase_stats"]["ft"]["curve"]["eval_loss"][0][1] for name, stats in (("one", one), ("two", two))}
    assert first_validation_loss["two"] == pytest.approx(first_validation_loss["one"], rel=0.05)
    assert abs(two["test"]["accuracy"] - one["test"]["accuracy"]) <= 0.05
    assert two["test"]["accuracy"] >= 0.8

    # Test scores gathered over the two ranks equal one process scoring the saved model.
    test_rows = pd.read_json(runs["root"] / "toy" / "test.jsonl", lines=True)
    model = PhaseFitModel.from_pretrained(runs["two"], device="cpu")
    again = classification_metrics(test_rows["label"].tolist(), model.predict(test_rows["text"].tolist()), model.labels)
    assert again["confusion_matrix"] == two["test"]["confusion_matrix"]
    assert again["n_examples"] == two["test"]["n_examples"] == 60

    texts = [row["text"] for row in toy_rows({"sport": 10, "weather": 10, "food": 10}, seed=3)]
    embeddings = {name: PhaseFitModel.from_pretrained(runs[name], device="cpu").encode(texts) for name in ("one", "two", "other")}
    ddp_gap = np.abs(embeddings["two"] - embeddings["one"]).mean()
    seed_gap = np.abs(embeddings["other"] - embeddings["one"]).mean()
    assert ddp_gap < 0.75 * seed_gap, (ddp_gap, seed_gap)  # dropout draws differ per rank, so not bit-identical


def test_rank_one_writes_nothing(runs):
    writes = {rank: json.loads((runs["root"] / f"writes.{rank}").read_text()) for rank in (0, 1)}
    assert writes[1] == []
    # The audit does see writes: rank 0 wrote the model, the phase cache and the TensorBoard logs.
    written = "\n".join(writes[0])
    assert "phasefit.json" in written and "os.mkdir cache" in written
    assert "two-logs/1-dae" in written and ".two.phasefit-work" in written
    assert (runs["two"] / "head.safetensors").is_file()
    assert not (runs["root"] / ".two.phasefit-work").exists()


def test_each_process_trains_its_own_pairs_and_no_pair_twice(tiny_model, tmp_path):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2", "--master-port", str(_free_port())]
    _run([*launcher, str(HERE / "distributed_batches.py"), tiny_model, str(tmp_path / "batches.json")], HERE)
    seen = json.loads((tmp_path / "batches.json").read_text())
    first, second = (set(rows) for rows in seen["ranks"])
    assert len(seen["ranks"][0]) == len(first) and len(seen["ranks"][1]) == len(second)  # no pair twice on a rank
    assert not first & second  # nor on both
    left_out = seen["pairs"] - len(first | second)
    assert 0 <= left_out < 2 * seen["batch_size"]  # only the last incomplete round of batches


def test_joint_recipe_two_processes_follow_one(runs):
    root = runs["root"]
    train = ["train", "toy", "--config", "options.yaml", "--recipe", "joint"]
    _run([sys.executable, "-m", "phasefit", *train, "--batch-size", "16", "-o", "joint-one"], root)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2", "--master-port", str(_free_port())]
    _run([*launcher, "-m", "phasefit", *train, "--batch-size", "8", "-o", "joint-two"], root)
    one, two = (_stats(root / name)["phase_stats"]["joint"] for name in ("joint-one", "joint-two"))
    assert two["steps"] == one["steps"] and two["effective_batch_size"] == one["effective_batch_size"] == 16
    one_curve, two_curve = ([value for _, value in stats["curve"]["train_loss"]] for stats in (one, two))
    assert two_curve[-1] < two_curve[0]
    assert two_curve == pytest.approx(one_curve, rel=0.05)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    """4 classes of 12 texts: one round of 2 processes x batch 32 is more than the DAE's texts."""
    folder = tmp_path_factory.mktemp("small") / "data"
    folder.mkdir()
    rows = toy_rows({"sport": 12, "weather": 12, "food": 12}, seed=4) + [{"text": f"song band album {i}", "label": "music"} for i in range(12)]
    pd.DataFrame(rows).to_json(folder / "train.jsonl", orient="records", lines=True)
    pd.DataFrame(toy_rows({"sport": 5, "weather": 5, "food": 5}, seed=6)).to_json(folder / "test.jsonl", orient="records", lines=True)
    return folder


def test_the_command_line_trains_3phase_on_small_data_under_torchrun(small_data, tiny_model):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2", "--master-port", str(_free_port())]
    _run([*launcher, "-m", "phasefit", "train", "data", "--model", tiny_model, "--recipe", "3phase", "-o", "out"], small_data.parent)
    stats = _stats(small_data.parent / "out")
    assert stats["phase_stats"]["dae"]["steps"] >= 1 and stats["phase_stats"]["cl"]["steps"] >= 1


def test_every_recipe_trains_under_two_processes_and_loads_in_one(small_data, tiny_model):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2", "--master-port", str(_free_port())]
    _run([*launcher, str(HERE / "all_recipes_ddp.py"), str(small_data), tiny_model, "models"], small_data.parent)
    test_rows = pd.read_json(small_data / "test.jsonl", lines=True)
    for recipe in RECIPES:
        folder = small_data.parent / "models" / recipe
        stats = _stats(folder)
        assert all(phase_stats.get("steps", 1) >= 1 for phase_stats in stats["phase_stats"].values()), recipe
        model = PhaseFitModel.from_pretrained(folder, device="cpu")
        again = classification_metrics(test_rows["label"].tolist(), model.predict(test_rows["text"].tolist()), model.labels)
        assert again["confusion_matrix"] == stats["test"]["confusion_matrix"], recipe


def test_a_multi_label_run_trains_under_two_processes_and_its_saved_model_scores_the_same(tmp_path, tiny_model):
    from test_multilabel import multi_label_folder

    from phasefit import evaluate_split, load_data

    folder, names = multi_label_folder(tmp_path)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2", "--master-port", str(_free_port())]
    _run([*launcher, str(HERE / "all_recipes_ddp.py"), str(folder), tiny_model, "models", "3phase,ft+st", "6"], tmp_path)
    for recipe in ("3phase", "ft+st"):
        saved = tmp_path / "models" / recipe
        stats = _stats(saved)
        assert "micro_f1" in stats["test"] and stats["phase_stats"]["ft"]["thresholds"], recipe
        model = PhaseFitModel.from_pretrained(saved, device="cpu")
        test = load_data(folder, seed=0).test
        assert model.multi_label and evaluate_split(model, test)["micro_f1"] == pytest.approx(stats["test"]["micro_f1"]), recipe
    assert _stats(tmp_path / "models" / "3phase")["phase_stats"]["cl"]["pairs"] > 0
    assert _stats(tmp_path / "models" / "ft+st")["phase_stats"]["st"]["rounds"][0]["pseudo_labels"] > 0
