import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phasefit.pairs import build_pairs, correct_imbalance, imbalance_ratio, upsampling_factors


def test_ratio_is_zero_for_the_largest_class_and_max_ratio_for_a_single_example():
    ratio = imbalance_ratio(np.array([3309, 1]), max_ratio=4.0)
    assert ratio[0] == 0.0
    assert ratio[1] == pytest.approx(4.0)


def test_atis_worked_example_from_the_spec():
    sizes = np.array([3309, 385, 139, 17, 6, 2, 1])
    assert imbalance_ratio(sizes, 4.0)[1:4] == pytest.approx([1.062, 1.565, 2.602], abs=1e-3)
    assert upsampling_factors(sizes, 1.5, 4.0).tolist() == [1, 1, 2, 3, 3, 4, 4]


def test_threshold_min_ratio_leaves_classes_below_it_alone():
    sizes = np.array([1000, 200, 10])
    ratios = imbalance_ratio(sizes, 4.0)
    factors = upsampling_factors(sizes, min_ratio=ratios[1] + 0.01, max_ratio=4.0)
    assert factors[1] == 1 and factors[2] > 1


@pytest.mark.parametrize("sizes", [[5], [1, 1, 1], [7, 7]])
def test_no_correction_with_one_class_or_largest_class_of_one_or_balanced(sizes):
    assert upsampling_factors(np.array(sizes), 1.5, 4.0).tolist() == [1] * len(sizes)


def test_correction_counts_per_class_and_noised_copies():
    texts = [f"this is the text number {i} of a big class" for i in range(100)] + ["the small one is here", "and the other one is there"]
    labels = np.array([0] * 100 + [1, 1])
    new_texts, new_labels = correct_imbalance(texts, labels, 1.5, 4.0, np.random.default_rng(0))
    factor = upsampling_factors(np.array([100, 2]), 1.5, 4.0)[1]
    assert factor == 3
    assert np.bincount(new_labels[:, -1]).tolist() == [100, 2 * factor]
    copies = new_texts[102:]
    assert all(copy not in ("the small one is here", "and the other one is there") for copy in copies)
    assert new_texts[:102] == texts


def test_text_without_stop_words_is_copied_as_is():
    texts = ["alpha beta"] * 50 + ["gamma delta"]
    new_texts, _ = correct_imbalance(texts, np.array([0] * 50 + [1]), 1.5, 4.0, np.random.default_rng(0))
    assert new_texts[51:] == ["gamma delta"] * 3


def _check_pairs(pairs, n):
    assert np.all(pairs.first != pairs.second)
    keys = np.minimum(pairs.first, pairs.second) * n + np.maximum(pairs.first, pairs.second)
    assert np.unique(keys).size == keys.size
    assert np.all((pairs.score >= 0) & (pairs.score <= 1))


def test_pairs_are_unique_distinct_and_balanced():
    labels = np.array([0] * 30 + [1] * 20 + [2] * 10)
    pairs = build_pairs(labels, 4, np.random.default_rng(1))
    _check_pairs(pairs, labels.size)
    values, counts = np.unique(pairs.score, return_counts=True)
    assert values.tolist() == [0.0, 1.0]
    assert counts[0] == counts[1] == 120
    assert np.array_equal(pairs.score == 1, labels[pairs.first] == labels[pairs.second])


def test_hierarchical_scores_are_the_share_of_agreeing_levels():
    coarse = np.array([0] * 40 + [1] * 40)
    fine = np.array([0] * 20 + [1] * 20 + [2] * 20 + [3] * 20)
    labels = np.stack([coarse, fine], axis=1)
    pairs = build_pairs(labels, 3, np.random.default_rng(2))
    _check_pairs(pairs, 80)
    expected = ((coarse[pairs.first] == coarse[pairs.second]).astype(float) + (fine[pairs.first] == fine[pairs.second])) / 2
    assert np.array_equal(pairs.score, expected)
    values, counts = np.unique(pairs.score, return_counts=True)
    assert values.tolist() == [0.0, 0.5, 1.0] and len(set(counts.tolist())) == 1


def test_pair_count_is_capped_by_the_possible_positives():
    labels = np.array([0, 0, 1, 1, 1])
    pairs = build_pairs(labels, 100, np.random.default_rng(0))
    assert len(pairs) == 2 * 4  # 1 + 3 positive pairs exist, balanced by as many negatives
    _check_pairs(pairs, 5)


def test_pair_builder_scales_to_many_examples_without_quadratic_memory():
    labels = np.random.default_rng(0).integers(0, 100, size=200_000)
    pairs = build_pairs(labels, 4, np.random.default_rng(0))
    assert len(pairs) == 800_000


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=2, max_size=80), st.floats(0.5, 6), st.integers(0, 2**31))
def test_pair_invariants_hold_for_any_labels(labels, per_example, seed):
    labels = np.array(labels)
    pairs = build_pairs(labels, per_example, np.random.default_rng(seed))
    _check_pairs(pairs, labels.size)
    if len(pairs):
        values, counts = np.unique(pairs.score, return_counts=True)
        assert len(set(counts.tolist())) == 1
        assert len(pairs) <= math.ceil(per_example * labels.size) + len(values)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 500), min_size=1, max_size=12), st.floats(1.0, 3.0), st.floats(1.0, 30.0))
def test_factors_lie_between_one_and_max_ratio(sizes, min_ratio, max_ratio):
    factors = upsampling_factors(np.array(sizes), min_ratio, max_ratio)
    assert np.all(factors >= 1) and np.all(factors <= round(max_ratio + 0.5))
    assert factors[int(np.argmax(sizes))] == 1
