"""One live run per output folder: a second run refuses and names the first; a killed run's lock is taken over."""

import json
import os
import subprocess
import sys

from test_resume import command

from phasefit import PhaseFitModel
from phasefit.lock import OutputLock, lock_path_for

ENVIRONMENT = {**os.environ, "OMP_NUM_THREADS": "1"}


HOLD_LOCK = (
    "import sys; from pathlib import Path; from phasefit.lock import OutputLock\n"
    "with OutputLock(Path(sys.argv[1])):\n"
    "    print('held', flush=True); sys.stdin.readline()\n"
)


def test_a_second_run_into_a_live_runs_folder_refuses_and_runs_once_the_first_lets_go(toy_folder, tiny_model, tmp_path):
    output = tmp_path / "run"
    # The first run is a process that holds the folder's lock until told to let go: no timing decides what the second sees.
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(output)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        second = subprocess.run(command(toy_folder, tiny_model, output), capture_output=True, text=True, env=ENVIRONMENT, timeout=120)
        assert second.returncode == 2 and "Traceback" not in second.stderr
        assert f"another phasefit run (pid {holder.pid}" in " ".join(second.stderr.split())
        assert not output.exists()
    finally:
        holder.communicate("go\n", timeout=60)
    assert holder.returncode == 0
    third = subprocess.run(command(toy_folder, tiny_model, output), capture_output=True, text=True, env=ENVIRONMENT, timeout=300)
    assert third.returncode == 0, third.stderr[-2000:]
    assert PhaseFitModel.from_pretrained(output).predict(["the team won the match"])
    assert lock_path_for(output).read_text() == ""  # released: kept, emptied


def test_a_released_lock_keeps_its_file_so_every_run_locks_the_same_inode(tmp_path):
    output = tmp_path / "run"
    with OutputLock(output):
        inode = lock_path_for(output).stat().st_ino
    assert lock_path_for(output).stat().st_ino == inode and lock_path_for(output).read_text() == ""
    with OutputLock(output) as lock:
        assert lock.took_over is None  # an emptied file names no earlier holder
        assert lock_path_for(output).stat().st_ino == inode


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    output = tmp_path / "run"
    lock_path_for(output).write_text(json.dumps({"pid": 999999, "host": "h", "started": "then"}))
    with OutputLock(output) as lock:
        assert lock.took_over["pid"] == 999999
        assert json.loads(lock_path_for(output).read_text())["pid"] == os.getpid()
    assert lock_path_for(output).read_text() == ""


def test_a_held_lock_is_refused_to_another_process(tmp_path):
    output = tmp_path / "run"
    with OutputLock(output):
        child = subprocess.run(
            [sys.executable, "-c", f"from pathlib import Path; from phasefit.lock import OutputLock; OutputLock(Path({str(output)!r})).__enter__()"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert child.returncode != 0 and f"pid {os.getpid()}" in child.stderr
