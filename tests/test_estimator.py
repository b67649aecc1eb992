"""PhaseFitClassifier: a scikit-learn estimator on texts (clone, Pipeline, GridSearchCV, save / load)."""

import numpy as np
import pandas as pd
import pytest
from conftest import FAST, toy_rows
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils import estimator_checks

from phasefit import PhaseFitClassifier, PhaseFitModel
from phasefit.errors import ConfigError, DataError

# scikit-learn's checks that apply to an estimator whose input is text; the others feed it numeric
# arrays (fit/predict on random floats, sparse matrices, NaN handling, n_features_in_ checks) and
# do not apply: a text classifier rejects floats by design.
APPLICABLE_CHECKS = [
    "check_no_attributes_set_in_init",
    "check_parameters_default_constructible",
    "check_get_params_invariance",
    "check_set_params",
    "check_estimator_cloneable",
    "check_estimator_repr",
    "check_do_not_raise_errors_in_init_or_set_params",
]


@pytest.fixture()
def toy_xy():
    rows = toy_rows({"sport": 16, "weather": 16}, seed=8)
    return pd.Series([r["text"] for r in rows]), np.array([1 if r["label"] == "sport" else 0 for r in rows])


def _fast(tiny_model, **more):
    return PhaseFitClassifier(recipe="ft", model=tiny_model, seed=0, snapshot_examples=0, **{**{k: dict(v) for k, v in FAST.items()}, **more})


@pytest.mark.parametrize("check", APPLICABLE_CHECKS)
def test_scikit_learn_checks_that_apply_to_text_input(check, tiny_model):
    getattr(estimator_checks, check)("PhaseFitClassifier", _fast(tiny_model))


def test_fit_predict_score_keep_the_label_type(tiny_model, toy_xy):
    X, y = toy_xy
    clf = _fast(tiny_model).fit(X, y)
    assert list(clf.classes_) == [0, 1]
    predicted = clf.predict(["the team won the match", "rain and snow today"])
    assert set(predicted) <= {0, 1} and isinstance(predicted[0], (int, np.integer))
    assert clf.predict_proba(X[:3]).shape == (3, 2)
    assert 0.0 <= clf.score(X, y) <= 1.0


def test_clone_gives_an_equal_unfitted_copy_and_set_params_reaches_phase_options(tiny_model):
    clf = _fast(tiny_model, max_length=32)
    copy = clone(clf)
    assert copy.get_params() == clf.get_params() and not hasattr(copy, "model_")
    copy.set_params(ft__learning_rate=5e-4, seed=3)
    assert copy.get_params()["ft"]["learning_rate"] == 5e-4 and copy.seed == 3
    assert clf.get_params()["ft"]["learning_rate"] == FAST["ft"]["learning_rate"]
    with pytest.raises(ConfigError, match="unknown option"):
        PhaseFitClassifier(dea={"epochs": 1})


def test_pipeline_and_grid_search(tiny_model, toy_xy):
    X, y = toy_xy
    pipeline = make_pipeline(FunctionTransformer(lambda texts: [t.lower() for t in texts]), _fast(tiny_model))
    assert pipeline.fit(X, y).predict(["THE TEAM WON"])[0] in {0, 1}
    search = GridSearchCV(_fast(tiny_model), {"ft__learning_rate": [1e-3, 3e-3]}, cv=2)
    search.fit(X, y)
    assert search.best_params_["ft__learning_rate"] in {1e-3, 3e-3}
    assert len(search.cv_results_["mean_test_score"]) == 2


def test_save_and_load_round_trip(tiny_model, toy_xy, tmp_path):
    X, y = toy_xy
    clf = _fast(tiny_model).fit(X, y)
    folder = clf.save(tmp_path / "model")
    again = PhaseFitClassifier.load(folder)
    assert np.array_equal(again.predict_proba(X), clf.predict_proba(X))
    assert list(again.predict(X)) == list(clf.predict(X)) and again.get_params()["recipe"] == "ft"
    assert PhaseFitModel.from_pretrained(folder).labels == ["0", "1"]


def test_bad_input_is_named(tiny_model, toy_xy):
    X, y = toy_xy
    with pytest.raises(DataError, match="X has 32 texts but y has 3 labels"):
        _fast(tiny_model).fit(X, y[:3])
    with pytest.raises(DataError, match="row 0 is float"):
        _fast(tiny_model).fit([0.5] * 32, y)
