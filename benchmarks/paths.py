"""Where the benchmark reads and writes: this folder, its records and profiles, and the shared datasets beside the checkout."""

from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PROFILES = HERE / "profiles"
DEFAULT_DATA_ROOT = HERE.parent.parent / "shared" / "datasets"
METHOD_FILE = HERE.parent.parent / "shared" / "METHOD.md"
