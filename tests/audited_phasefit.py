"""``python audited_phasefit.py REPORT train ...``: the phasefit CLI, with every file write of each rank recorded.

A Python audit hook sees each ``open`` for writing, ``mkdir``, ``rename``, ``remove`` and ``rmtree``
the process makes; at exit the process writes what it saw (a JSON list) to ``REPORT.<rank>``, through
a file it opened before the hook was installed.
"""

from __future__ import annotations

import atexit
import json
import os
import sys

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
IGNORED_PREFIXES = ("/dev/", "/proc/")


def _is_write(event: str, args: tuple) -> str | None:
    if event == "open":
        path, mode, flags = args
        writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & WRITE_FLAGS)
        return str(path) if writing and isinstance(path, (str, bytes, os.PathLike)) else None
    if event == "os.mkdir":
        return None if os.path.exists(args[0]) else str(args[0])
    if event in {"os.rename", "os.remove", "os.rmdir", "shutil.rmtree", "os.truncate", "os.symlink", "os.link"}:
        return str(args[0])
    return None


def main() -> None:
    report_base, arguments = sys.argv[1], sys.argv[2:]
    rank = int(os.environ.get("RANK", "0"))
    report = open(f"{report_base}.{rank}", "w", encoding="utf-8")  # opened before auditing starts
    writes: list[str] = []

    def hook(event: str, args: tuple) -> None:
        path = _is_write(event, args)
        if path is not None and not path.startswith(IGNORED_PREFIXES):
            writes.append(f"{event} {path}")

    def dump() -> None:
        json.dump(writes, report)
        report.close()

    atexit.register(dump)
    # Libraries that write at import time (a probe file in the temp folder, torch's compile cache
    # folder) are imported first: what is recorded is what the run itself writes.
    import datasets  # noqa: F401
    import torch._dynamo  # noqa: F401
    from transformers import Trainer  # noqa: F401

    import phasefit.pipeline  # noqa: F401
    from phasefit.cli import main as phasefit_main

    sys.addaudithook(hook)
    sys.argv = ["phasefit", *arguments]

    phasefit_main()


if __name__ == "__main__":
    main()
