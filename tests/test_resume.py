"""Kill training with SIGKILL in each phase, resume, and compare with an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from phasefit import PhaseFitModel

SLOW = {
    "--dae-epochs": "30",
    "--dae-min-steps": "0",
    "--cl-min-steps": "0",
    "--dae-batch-size": "8",
    "--dae-learning-rate": "1e-3",
    "--cl-epochs": "8",
    "--cl-batch-size": "8",
    "--cl-learning-rate": "1e-3",
    "--cl-pairs-per-example": "2",
    "--ft-epochs": "12",
    "--ft-min-steps": "0",
    "--ft-batch-size": "8",
    "--ft-learning-rate": "1e-3",
    "--ft-head-size": "16",
    "--ft-patience": "100",
}


def command(data: Path, model: str, output: Path) -> list[str]:
    flags = [item for pair in SLOW.items() for item in pair]
    return [
        sys.executable,
        "-m",
        "phasefit",
        "train",
        str(data),
        "--model",
        model,
        "--output",
        str(output),
        "--seed",
        "0",
        "--checkpoint-steps",
        "4",
        "--refit-on-all-labels",
        "never",
        *flags,
    ]


def run_until(args: list[str], ready, timeout: float = 240) -> float:
    """Start training and SIGKILL it as soon as ``ready()`` holds; returns the seconds it ran."""
    started = time.monotonic()
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    while time.monotonic() - started < timeout:
        if ready():
            process.send_signal(signal.SIGKILL)
            process.wait()
            return time.monotonic() - started
        if process.poll() is not None:
            raise AssertionError(f"training ended before it could be killed: {process.stderr.read().decode()[-2000:]}")
        time.sleep(0.02)
    process.kill()
    raise AssertionError("timed out waiting for a checkpoint")


def checkpoints_of(work: Path, phase: str) -> list[Path]:
    return [p for p in work.glob(f"checkpoints/*-{phase}-*/checkpoint-*") if (p / "trainer_state.json").is_file()]


def test_sigkill_in_each_phase_then_resume(toy_folder, tiny_model, tmp_path):
    output = tmp_path / "run"
    work = tmp_path / ".run.phasefit-work"
    args = command(toy_folder, tiny_model, output)
    timings = {}

    timings["dae"] = run_until(args, lambda: bool(checkpoints_of(work, "dae")))
    assert not list(work.glob("phases/*")), "the DAE phase must not have finished"

    timings["cl"] = run_until(args, lambda: bool(checkpoints_of(work, "cl")))
    finished = list(work.glob("phases/*"))
    assert len(finished) == 1, "the DAE phase is finished and kept"
    dae_stamp = finished[0].stat().st_mtime

    timings["ft"] = run_until(args, lambda: bool(checkpoints_of(work, "ft")))
    assert len(list(work.glob("phases/*"))) == 2
    assert min(p.stat().st_mtime for p in work.glob("phases/*")) == dae_stamp, "a finished phase is never recomputed"

    resumed = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming" in resumed.stderr
    assert not work.exists(), "the work folder is removed once the model is saved"
    report = json.loads((output / "metrics.json").read_text())
    assert report["cached_phases"] == ["dae", "cl"]
    assert report["phase_stats"]["ft"]["resumed_from_step"] > 0

    reference = tmp_path / "reference"
    straight = subprocess.run(
        command(toy_folder, tiny_model, reference), capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300
    )
    assert straight.returncode == 0, straight.stderr[-3000:]
    expected = json.loads((reference / "metrics.json").read_text())
    assert abs(report["test"]["accuracy"] - expected["test"]["accuracy"]) <= 0.1, (report["test"], expected["test"], timings)
    texts = ["the team won the match", "rain and snow today", "pizza and cheese for dinner"]
    agreement = sum(a == b for a, b in zip(PhaseFitModel.from_pretrained(output).predict(texts), PhaseFitModel.from_pretrained(reference).predict(texts)))
    assert agreement >= 2
    print("seconds until each kill:", timings)


def test_sigkill_in_the_refit_on_all_labels_then_resume(toy_folder, tiny_model, tmp_path):
    output = tmp_path / "run"
    work = tmp_path / ".run.phasefit-work"
    # The refit trains as many steps as the budget pass's best one. On this tiny model a prior head bias starts at the
    # majority class, which no later evaluation beats, so its refit would end at its first checkpoint, too soon to be
    # killed; a random bias improves for longer.
    options = tmp_path / "random-head-bias.yaml"
    options.write_text("ft: {head_bias: random}\n")
    args = [*command(toy_folder, tiny_model, output), "--recipe", "ft", "--config", str(options)]
    args[args.index("--refit-on-all-labels") + 1] = "always"
    run_until(args, lambda: bool([p for p in work.glob("refit/checkpoints/*-ft-*/checkpoint-*") if (p / "trainer_state.json").is_file()]))
    resumed = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    report = json.loads((output / "metrics.json").read_text())
    assert report["phase_stats"]["ft"]["resumed_from_step"] > 0, "the refit continues from its checkpoint"
    # The budget pass is trained again (its FT keeps no finished state), which is cheap where auto refits: few labels.
    budget = report["phase_stats"]["budget_pass"]["ft"]
    assert report["phase_stats"]["ft"]["steps"] == max(1, budget["best_step"]) and not work.exists()


def test_sigkill_in_multi_label_fine_tuning_then_resume(tiny_model, tmp_path):
    from test_multilabel import multi_label_folder

    folder, names = multi_label_folder(tmp_path)
    output = tmp_path / "run"
    work = tmp_path / ".run.phasefit-work"
    args = [*command(folder, tiny_model, output), "--recipe", "cl+ft"]
    run_until(args, lambda: bool(checkpoints_of(work, "ft")))
    resumed = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    report = json.loads((output / "metrics.json").read_text())
    assert report["cached_phases"] == ["cl"] and report["phase_stats"]["ft"]["resumed_from_step"] > 0
    assert {"micro_f1", "macro_f1", "per_label"} <= set(report["test"]) and not work.exists()
    model = PhaseFitModel.from_pretrained(output)
    assert model.multi_label and sorted(model.labels) == names
    answers = model.predict(["the team won the match", "rain and snow today"])
    assert all(isinstance(labels, list) and set(labels) <= set(names) for labels in answers)
