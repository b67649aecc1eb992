"""Multi-label building blocks: label sets read and checked, the per-label draw, the metrics, Jaccard pairs."""

import time

import numpy as np
import pandas as pd
import pytest

from phasefit.errors import DataError
from phasefit.multilabel import LabelSetSplit, is_label_list_column, label_counts, label_set_split, multilabel_metrics, sample_per_label
from phasefit.pairs import build_label_set_pairs, jaccard


def test_label_lists_become_label_sets_and_an_empty_list_means_no_label():
    frame = pd.DataFrame({"text": ["a", "b", "c"], "labels": [["joy", "love", "joy"], [], ["anger"]]})
    split = label_set_split(frame, "train.jsonl")
    assert split.label_sets == [("joy", "love"), (), ("anger",)] and split.labels == ["anger", "joy", "love"]
    assert split.indicator(["anger", "joy", "love"]).tolist() == [[0, 1, 1], [0, 0, 0], [1, 0, 0]]
    with pytest.raises(DataError, match=r"row 1: label 'joy' is not among the 1 labels"):
        split.indicator(["love"])


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([["joy"], "anger", ["love"]], r"train.jsonl: column 'labels' mixes label lists and single labels \(row 2 differs"),
        ([["joy"], [""], ["love"]], r"train.jsonl: row 2, column 'labels': an empty label"),
    ],
)
def test_bad_label_lists_name_the_row(labels, message):
    with pytest.raises(DataError, match=message):
        label_set_split(pd.DataFrame({"text": ["a", "b", "c"], "labels": labels}), "train.jsonl")


def test_a_column_of_single_labels_is_not_multi_label():
    assert not is_label_list_column(pd.DataFrame({"label": ["a", "b"]}), "label", "x")
    assert is_label_list_column(pd.DataFrame({"labels": [["a"], []]}), "labels", "x")


def test_zero_one_columns_are_label_sets_and_other_values_name_row_and_column():
    frame = pd.DataFrame({"text": ["a", "b"], "sports": ["1", "0"], "news": [1, 1], "tech": [0.0, 0]})
    split = label_set_split(frame, "data.csv", indicator_columns=["sports", "news", "tech"], row_offset=2)
    assert split.label_sets == [("sports", "news"), ("news",)]
    frame["tech"] = ["0", "maybe"]
    with pytest.raises(DataError, match=r"data.csv: row 3, column 'tech': 'maybe' is not 0 or 1"):
        label_set_split(frame, "data.csv", indicator_columns=["sports", "news", "tech"], row_offset=2)


def test_the_per_label_draw_gives_every_label_its_rows_rarest_first_and_is_seeded():
    rng = np.random.default_rng(0)
    names = [f"l{i}" for i in range(6)]
    label_sets = [tuple(sorted(set(rng.choice(names, size=rng.integers(1, 4), p=[0.4, 0.3, 0.15, 0.1, 0.04, 0.01])))) for _ in range(2000)]
    label_sets += [()] * 50
    chosen = sample_per_label(label_sets, 8, np.random.default_rng(1))
    counts = label_counts([label_sets[i] for i in chosen])
    available = label_counts(label_sets)
    assert all(counts[label] >= min(8, available[label]) for label in available)
    assert all(label_sets[i] for i in chosen), "rows with no label are not drawn"
    assert len(chosen) <= 8 * len(available), "each label takes at most N rows of its own"
    assert chosen.tolist() == sample_per_label(label_sets, 8, np.random.default_rng(1)).tolist()
    assert chosen.tolist() != sample_per_label(label_sets, 8, np.random.default_rng(2)).tolist()


def test_multi_label_metrics_match_a_hand_count():
    truth = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]])
    predicted = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1]])
    scores = multilabel_metrics(truth, predicted, ["a", "b", "c"])
    # true positives 3, false positives 1, false negatives 2: micro precision 3/4, recall 3/5
    assert scores["micro_f1"] == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert scores["subset_accuracy"] == pytest.approx(1 / 3) and scores["hamming_loss"] == pytest.approx(3 / 9)
    assert scores["per_label"]["a"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    assert scores["per_label"]["c"]["f1"] == 0.0 and scores["n_examples"] == 3
    assert scores["macro_f1"] == pytest.approx((1.0 + 2 / 3 + 0.0) / 3)


def test_label_set_pairs_are_unique_scored_by_jaccard_and_half_related():
    indicator = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0], [1, 0, 1]] * 30, dtype=np.float32)
    pairs = build_label_set_pairs(indicator, 4.0, np.random.default_rng(0))
    keys = {tuple(sorted(pair)) for pair in zip(pairs.first.tolist(), pairs.second.tolist())}
    assert len(keys) == len(pairs.first) and all(a != b for a, b in keys)
    assert np.allclose(pairs.score, jaccard(indicator, pairs.first, pairs.second))
    assert set(np.round(pairs.score, 3)) <= {0.0, 0.333, 0.5, 1.0}
    assert 0.3 < (pairs.score > 0).mean() < 0.9  # the related half shares a label; random pairs sometimes do too
    assert jaccard(np.zeros((2, 3)), np.array([0]), np.array([1])).tolist() == [1.0]


def test_label_set_pairs_stay_linear_on_goemotions_sized_data():
    rng = np.random.default_rng(0)
    rows = 43_410
    indicator = np.zeros((rows, 28), dtype=np.float32)
    for row, count in enumerate(rng.choice([1, 2, 3, 4, 5], size=rows, p=[0.83, 0.15, 0.015, 0.004, 0.001])):
        indicator[row, rng.choice(28, size=count, replace=False)] = 1
    started = time.perf_counter()
    pairs = build_label_set_pairs(indicator, 4.0, rng)
    assert time.perf_counter() - started < 20 and len(pairs.first) > 3 * rows


def test_a_label_set_split_subsets_like_a_split():
    split = LabelSetSplit(["a", "b", "c"], [("x",), (), ("y", "x")])
    assert split.subset([2, 0]).label_sets == [("y", "x"), ("x",)]
