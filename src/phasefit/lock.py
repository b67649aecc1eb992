"""One live run per output folder: an advisory file lock beside it, released by the kernel when its holder dies.

The lock file names its holder (pid, host, start time), so a second run can say who holds it. A
lock left by a killed run is not held by anyone any more (``flock`` locks die with their process),
so the next run takes it over and ``--resume`` works after SIGKILL.

The file itself is never removed: a run that opened it just before another removed it would lock a
nameless inode while a third run locked a new file under the same name. Releasing empties it
instead, so an empty lock file means "nobody holds it, and its last holder finished cleanly".
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from .errors import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, runs are not guarded
    fcntl = None  # type: ignore[assignment]


def lock_path_for(output: Path) -> Path:
    return output.parent / f".{output.name}.phasefit-lock"


class OutputLock:
    """``with OutputLock(output):`` holds the folder's lock for the run, or raises :class:`ConfigError` naming the holder."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.path = lock_path_for(output)
        self.handle = None
        self.took_over: dict | None = None

    def __enter__(self) -> "OutputLock":
        if fcntl is None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_holder(handle)
            handle.close()
            who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started', '?')}" if holder else "another process"
            raise ConfigError(
                f"--output {self.output}: another phasefit run ({who}) is training into this folder. Wait for it to finish, or choose another --output."
            ) from None
        self.took_over = _read_holder(handle) or None  # a killed run's lock: nobody holds it any more
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}))
        handle.flush()
        self.handle = handle
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        if self.handle is None:
            return
        self.handle.seek(0)
        self.handle.truncate()  # while still held: the next holder finds no stale name in it
        self.handle.flush()
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()
        self.handle = None


def _read_holder(handle) -> dict:
    handle.seek(0)
    try:
        holder = json.loads(handle.read() or "{}")
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}
