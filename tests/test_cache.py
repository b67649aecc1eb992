"""The phase cache key holds every ingredient a phase's output depends on: change one, the cache misses."""

import os
import shutil

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import phasefit._version
from phasefit import cache, pipeline, train


def _train_twice(toy_folder, options, change):
    first = train(toy_folder, options, recipe="cl+ft")
    assert first.cached_phases == []
    assert train(toy_folder, options, recipe="cl+ft").cached_phases == ["cl"]  # unchanged: a hit
    change()
    return train(toy_folder, options, recipe="cl+ft").cached_phases


INGREDIENTS = {
    "phasefit version": lambda mp: mp.setattr(phasefit._version, "__version__", "99.0"),
    "phase code": lambda mp: mp.setattr(pipeline, "phase_code_hash", lambda phase=None: "edited-code"),
    "torch version": lambda mp: mp.setattr(torch, "__version__", "0.0.1"),
    "transformers version": lambda mp: mp.setattr(__import__("transformers"), "__version__", "0.0.1"),
    "sentence-transformers version": lambda mp: mp.setattr(__import__("sentence_transformers"), "__version__", "0.0.1"),
}


@pytest.mark.parametrize("ingredient", list(INGREDIENTS))
def test_changing_an_ingredient_misses_the_cache(ingredient, toy_folder, fast_options, tmp_path, monkeypatch):
    options = {**fast_options, "cache_dir": str(tmp_path / "cache")}
    assert _train_twice(toy_folder, options, lambda: INGREDIENTS[ingredient](monkeypatch)) == []


def test_each_cached_phase_hashes_its_own_code_so_editing_fine_tuning_keeps_a_dae(tmp_path):
    package = tmp_path / "phasefit"
    shutil.copytree(os.path.dirname(cache.__file__), package, ignore=shutil.ignore_patterns("__pycache__"))
    before = {phase: cache.phase_code_hash(phase, package) for phase in ("dae", "cl", "joint", "ft")}
    assert before["dae"] == cache.phase_code_hash("dae") and len(set(before.values())) == 4

    def edit(name: str) -> dict[str, str]:
        with open(package / name, "a", encoding="utf-8") as handle:
            handle.write("\n# edited\n")
        return {phase: cache.phase_code_hash(phase, package) for phase in before}

    after_ft = edit("phases/ft.py")
    assert after_ft["dae"] == before["dae"] and after_ft["cl"] == before["cl"] and after_ft["ft"] != before["ft"]
    after_dae = edit("phases/dae.py")
    assert after_dae["dae"] != before["dae"] and after_dae["cl"] == before["cl"]
    assert edit("phases/common.py")["cl"] != before["cl"]  # shared code moves every key


def test_precision_is_resolved_into_the_key():
    assert cache.run_ingredients("m", 32, "auto")["precision"] == cache.run_ingredients("m", 32, "fp32")["precision"]  # on a CPU
    assert cache.run_ingredients("m", 32, "bf16")["precision"] != cache.run_ingredients("m", 32, "fp32")["precision"]


def test_new_weights_of_the_same_size_and_time_miss_the_cache(toy_folder, fast_options, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(fast_options["model"], model)
    options = {**fast_options, "model": str(model), "cache_dir": str(tmp_path / "cache")}
    weights = next(model.rglob("model.safetensors"))
    stat = weights.stat()

    def retrain_the_weights():
        content = bytearray(weights.read_bytes())
        content[-64:] = bytes(64)  # the last tensor's values, the header untouched
        weights.write_bytes(bytes(content))
        assert weights.stat().st_size == stat.st_size and load_file(str(weights))
        os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    assert _train_twice(toy_folder, options, retrain_the_weights) == []


def _package_imports(module: str, seen: set[str]) -> set[str]:
    """The package's source files ``module`` (a path under the package) imports, directly or through others."""
    import ast

    path = cache.PACKAGE / module
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = path.parent
            for _ in range(node.level - 1):
                base = base.parent
            targets = [node.module] if node.module else [alias.name for alias in node.names]
            for target in targets:
                found = base.joinpath(*target.split("."))
                name = str((found / "__init__.py" if found.is_dir() else found.with_suffix(".py")).relative_to(cache.PACKAGE))
                if name not in seen and (cache.PACKAGE / name).exists():
                    seen.add(name)
                    _package_imports(name, seen)
    return seen


def test_the_code_hash_of_each_cached_phase_covers_every_module_it_imports():
    assert ALL_PHASE_CODE_NAMES <= set(cache.ALL_PHASE_CODE)
    for phase, own in cache.PHASE_CODE.items():
        hashed = set(cache.SHARED_PHASE_CODE) | set(own)
        assert all((cache.PACKAGE / name).exists() for name in hashed)
        imported = _package_imports(f"phases/{phase}.py", set()) - {"config.py", "errors.py"}  # resolved options are in the key
        assert imported <= hashed, f"{phase}: {sorted(imported - hashed)} not in its code hash"


ALL_PHASE_CODE_NAMES = {"phases", "losses", "pairs.py", "noise.py"}


def test_a_hub_id_is_keyed_by_its_revision_when_cached(monkeypatch, tmp_path):
    snapshot = tmp_path / "models--org--name" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    monkeypatch.setattr("huggingface_hub.snapshot_download", lambda repo, local_files_only: str(snapshot))
    assert cache.model_revision("org/name") == "org/name@0123abc"


def test_a_dae_with_its_own_seed_serves_every_run_seed_and_recipe_from_the_cache(toy_folder, fast_options, tmp_path):
    # toy_folder has no validation split: each seed carves its own, and the DAE still reads the same training file.
    options = {**fast_options, "cache_dir": str(tmp_path / "cache"), "dae": {**fast_options["dae"], "seed": 0}}
    assert train(toy_folder, {**options, "seed": 1}, recipe="dae+ft").cached_phases == []
    assert train(toy_folder, {**options, "seed": 2}, recipe="dae+ft").cached_phases == ["dae"]
    assert train(toy_folder, {**options, "seed": 3}, recipe="3phase").cached_phases == ["dae"]
    per_run = {**options, "dae": dict(fast_options["dae"])}  # no seed of its own: the run's seed keys the DAE
    assert train(toy_folder, {**per_run, "seed": 1}, recipe="dae+ft").cached_phases == []
    assert train(toy_folder, {**per_run, "seed": 2}, recipe="dae+ft").cached_phases == []


def test_the_token_limit_which_keys_every_cached_phase_does_not_move_with_the_seed_that_carves_validation(tiny_model, tmp_path):
    # Texts of many lengths and no validation file: each seed carves other rows, yet the limit (and so the DAE's key) is
    # read off the whole training file. Before, it came from the rows the carve left, so SST-2 trained a DAE per seed.
    # (The 90th percentile, among the long texts, rather than the default 99.9th, so that a carve would move a limit read off what it left.)
    from conftest import toy_rows

    from phasefit.config import RunConfig
    from phasefit.data import load_data, with_validation_merged

    folder = tmp_path / "lengths"
    folder.mkdir()
    rows = toy_rows({"sport": 30, "weather": 30, "food": 30}, seed=3)
    for extra, row in enumerate(rows[:30], start=1):  # 30 texts of 30 different lengths, all under the model's 64 tokens
        row["text"] += " the" * extra
    pd.DataFrame(rows).to_json(folder / "train.jsonl", orient="records", lines=True)
    encoder = pipeline.load_encoder(tiny_model)
    carved, limits = set(), set()
    for seed in range(1, 11):
        data = load_data(str(folder), seed=seed, max_validation_examples=10)
        carved.add(tuple(sorted(data.carved_texts)))
        config = RunConfig(model=tiny_model, seed=seed, max_length_percentile=90.0)
        limits.add(pipeline._token_limit(encoder, data, config)[0])
        limits.add(pipeline._token_limit(encoder, with_validation_merged(data), config)[0])  # the refit on all labels
    assert len(carved) == 10 and len(limits) == 1
