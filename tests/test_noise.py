import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from phasefit.noise import delete_stop_words, delete_words
from phasefit.phases.dae import noisy_text_dataset


def test_deletion_ratio_is_respected_on_average():
    rng = np.random.default_rng(0)
    text = " ".join(f"w{i}" for i in range(1000))
    kept = len(delete_words(text, 0.6, rng).split())
    assert 340 < kept < 460


def test_at_least_one_word_survives_and_order_is_kept():
    rng = np.random.default_rng(0)
    for _ in range(200):
        noisy = delete_words("one two three", 0.99, rng).split()
        assert 1 <= len(noisy) <= 3
        assert noisy == sorted(noisy, key=["one", "two", "three"].index)


def test_noise_is_fresh_at_every_read():
    dataset = noisy_text_dataset(["a b c d e f g h i j k l m n o p"], 0.6, seed=0)
    reads = {dataset[0]["damaged"] for _ in range(20)}
    assert len(reads) > 5
    assert dataset[0]["original"] == "a b c d e f g h i j k l m n o p"


def test_stop_word_variant_drops_only_stop_words():
    rng = np.random.default_rng(0)
    text = "the cat is on the mat with a hat"
    for _ in range(50):
        variant = delete_stop_words(text, rng)
        assert variant != text
        for word in ["cat", "mat", "hat"]:
            assert word in variant.split()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["the", "a", "of", "cat", "dog", "run", "is", "it"]), min_size=1, max_size=20), st.integers(0, 2**31))
def test_noise_never_empties_a_text(words, seed):
    rng = np.random.default_rng(seed)
    text = " ".join(words)
    assert delete_words(text, 0.9, rng).split()
    variant = delete_stop_words(text, rng)
    assert variant.split()
    assert len(variant.split()) <= len(words)
