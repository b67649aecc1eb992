"""The benchmark's one entry point: ``python -m benchmarks COMMAND [options]``.

    python -m benchmarks run --datasets sst2 snips --regimes 8 64 --methods ft+st tuned-ft setfit --seeds 1 2 3
    python -m benchmarks report       # RESULTS.md, SPEED.md, the selection summary and the README's generated blocks
    python -m benchmarks speed side-by-side --dataset sst2 --regime 8
    python -m benchmarks selection --datasets sst2 --regimes 8

``python -m benchmarks COMMAND --help`` lists each command's options.
"""

from __future__ import annotations

import sys


def report_everything(argv: list[str]) -> None:
    """Every generated file from the records alone: RESULTS.md (and the README block), SPEED.md, results/selection/SUMMARY.md."""
    from . import report, selection_study, speed

    report.main(argv)
    speed.report()
    selection_study.write_summary()
    print(f"wrote {selection_study.OUTPUT.parent / 'SUMMARY.md'}")


def main(argv: list[str] | None = None) -> None:
    from . import run, selection_study, speed

    commands = {"run": run.main, "report": report_everything, "speed": speed.main, "selection": selection_study.main}
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in commands:
        print(__doc__, file=sys.stderr)
        raise SystemExit(0 if argv and argv[0] in {"-h", "--help"} else 2)
    commands[argv[0]](argv[1:])


if __name__ == "__main__":
    main()
