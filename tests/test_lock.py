"""One live run per output folder: a second run refuses and names the first; a killed run's lock is taken over."""

import json
import os
import signal
import subprocess
import sys
import time

from test_resume import command

from phasefit import PhaseFitModel
from phasefit.lock import OutputLock, lock_path_for

ENVIRONMENT = {**os.environ, "OMP_NUM_THREADS": "1"}


def test_a_second_run_into_a_live_runs_folder_refuses_and_the_first_finishes(toy_folder, tiny_model, tmp_path):
    output = tmp_path / "run"
    first = subprocess.Popen(command(toy_folder, tiny_model, output), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENVIRONMENT, text=True)
    lock = lock_path_for(output)
    deadline = time.monotonic() + 120
    while not (lock.is_file() and lock.read_text()) and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.05)
    assert json.loads(lock.read_text())["pid"] == first.pid
    # Paused while the second starts: otherwise the tiny first run can finish before the second is past its imports.
    first.send_signal(signal.SIGSTOP)
    try:
        second = subprocess.run(command(toy_folder, tiny_model, output), capture_output=True, text=True, env=ENVIRONMENT, timeout=120)
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert f"another phasefit run (pid {first.pid}" in " ".join(second.stderr.split())
    assert first.wait(timeout=300) == 0, first.stderr.read()[-2000:]
    assert PhaseFitModel.from_pretrained(output).predict(["the team won the match"])
    assert not lock.exists()


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    output = tmp_path / "run"
    lock_path_for(output).write_text(json.dumps({"pid": 999999, "host": "h", "started": "then"}))
    with OutputLock(output) as lock:
        assert lock.took_over["pid"] == 999999
        assert json.loads(lock_path_for(output).read_text())["pid"] == os.getpid()
    assert not lock_path_for(output).exists()


def test_a_held_lock_is_refused_to_another_process(tmp_path):
    output = tmp_path / "run"
    with OutputLock(output):
        child = subprocess.run(
            [sys.executable, "-c", f"from pathlib import Path; from phasefit.lock import OutputLock; OutputLock(Path({str(output)!r})).__enter__()"],
            capture_output=True, text=True, timeout=60,
        )
        assert child.returncode != 0 and f"pid {os.getpid()}" in child.stderr
