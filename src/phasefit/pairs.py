"""Imbalance correction and the pair builder of the contrastive phase: plain numpy, linear in the data.

Labels are an integer array of shape ``(n_examples, n_levels)``: one column per label level,
coarse to fine; flat labels have one column. The finest column is the class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .noise import delete_stop_words


def imbalance_ratio(class_sizes: np.ndarray, max_ratio: float) -> np.ndarray:
    """f(n) = max_ratio * ln(M / n) / ln(M), with M the largest class size (f(M) = 0, f(1) = max_ratio)."""
    sizes = np.asarray(class_sizes, dtype=float)
    largest = sizes.max()
    if largest <= 1:
        return np.zeros_like(sizes)
    return max_ratio * np.log(largest / sizes) / np.log(largest)


def upsampling_factors(class_sizes: np.ndarray, min_ratio: float, max_ratio: float) -> np.ndarray:
    """How many times each class is repeated: round(min(max_ratio, f(n))) where f(n) >= min_ratio, else 1."""
    sizes = np.asarray(class_sizes)
    if sizes.size < 2:
        return np.ones(sizes.size, dtype=int)
    ratio = imbalance_ratio(sizes, max_ratio)
    rounded = np.floor(np.minimum(ratio, max_ratio) + 0.5).astype(int)  # half up, as the spec's examples
    return np.where(ratio >= min_ratio, np.maximum(rounded, 1), 1)


def correct_imbalance(
    texts: list[str],
    labels: np.ndarray,
    min_ratio: float,
    max_ratio: float,
    rng: np.random.Generator,
) -> tuple[list[str], np.ndarray]:
    """Upsample small classes with stop-word-deleted variants of their texts.

    The originals come first, in their order; each extra copy is a fresh noised variant.
    """
    labels = np.asarray(labels).reshape(len(texts), -1)
    classes, class_of_example, sizes = np.unique(labels[:, -1], return_inverse=True, return_counts=True)
    factors = upsampling_factors(sizes, min_ratio, max_ratio)
    return _with_noised_copies(texts, labels, factors[class_of_example] - 1, rng)


def _with_noised_copies(texts: list[str], labels: np.ndarray, extra_copies: np.ndarray, rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
    """The originals, then ``extra_copies[i]`` fresh stop-word-deleted variants of text ``i`` with its labels."""
    if not extra_copies.any():
        return list(texts), labels
    source = np.repeat(np.arange(len(texts)), extra_copies)
    new_texts = list(texts) + [delete_stop_words(texts[i], rng) for i in source]
    return new_texts, np.concatenate([labels, labels[source]])


def correct_label_set_imbalance(
    texts: list[str],
    indicator: np.ndarray,
    min_ratio: float,
    max_ratio: float,
    rng: np.random.Generator,
) -> tuple[list[str], np.ndarray]:
    """The imbalance correction per label (multi-label rows, a 0/1 matrix): each label's factor comes from its row
    count as a class's does, and a row is repeated by the largest factor among its labels, so a row that carries a
    rare label is upsampled as that label's rows are; rows with no label stay single. Copies are stop-word-deleted
    variants, after the originals."""
    indicator = np.asarray(indicator)
    carried = indicator > 0
    sizes = carried.sum(axis=0)
    present = sizes > 0
    factors = np.ones(indicator.shape[1], dtype=int)
    factors[present] = upsampling_factors(sizes[present], min_ratio, max_ratio)
    row_factors = np.where(carried, factors, 1).max(axis=1, initial=1)
    return _with_noised_copies(texts, indicator, row_factors - 1, rng)


@dataclass(frozen=True)
class Pairs:
    """Index pairs into a list of texts, with their similarity targets in [0, 1]."""

    first: np.ndarray
    second: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return int(self.first.size)


def pair_scores(labels: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Hierarchical similarity: the share of label levels on which the two examples agree."""
    labels = np.asarray(labels).reshape(labels.shape[0], -1)
    return (labels[first] == labels[second]).mean(axis=1)


def _shuffle_within_groups(group: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A random order of the examples, grouped; each position's group start and group size."""
    order = rng.permutation(group.size)
    keys = group[order]
    if keys.max(initial=0) < 2**15:
        keys = keys.astype(np.int16)  # numpy sorts small integers stably by radix sort, in linear time
    order = order[np.argsort(keys, kind="stable")]
    sorted_group = group[order]
    starts_mask = np.r_[True, sorted_group[1:] != sorted_group[:-1]]
    starts = np.flatnonzero(starts_mask)
    sizes = np.diff(np.r_[starts, group.size])
    group_index = np.cumsum(starts_mask) - 1
    return order, starts[group_index], sizes[group_index], group_index


def _prefix_codes(labels: np.ndarray) -> np.ndarray:
    """Column ``l`` numbers the distinct label paths of levels ``0..l`` (so equal codes mean equal prefixes)."""
    codes = np.empty(labels.shape, dtype=np.int64)
    previous = np.zeros(labels.shape[0], dtype=np.int64)
    for level in range(labels.shape[1]):
        _, level_codes = np.unique(labels[:, level], return_inverse=True)
        combined = previous * (level_codes.max() + 1) + level_codes.ravel()
        previous = np.unique(combined, return_inverse=True)[1].ravel()
        codes[:, level] = previous
    return codes


def _candidates(codes: np.ndarray, agreeing: int, rounds: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Unique unordered pairs agreeing on exactly ``agreeing`` levels.

    The examples are shuffled within their groups once; each round pairs every example with the
    one a random (per group) distance further along its group, so a round is linear in the data.
    """
    n_examples = codes.shape[0]
    group = np.zeros(n_examples, dtype=np.int64) if agreeing == 0 else codes[:, agreeing - 1]
    order, start, size, group_index = _shuffle_within_groups(group, rng)
    positions = np.flatnonzero(size > 1)
    offset = positions - start[positions]
    group_sizes = np.bincount(group_index)
    a = order[positions]
    firsts, seconds = [], []
    for _ in range(rounds):
        shift = 1 + np.floor(rng.random(group_sizes.size) * np.maximum(group_sizes - 1, 1)).astype(np.int64)
        b = order[start[positions] + (offset + shift[group_index[positions]]) % size[positions]]
        exact = (codes[a] == codes[b]).sum(axis=1) == agreeing if codes.shape[1] > 1 or agreeing == 0 else slice(None)
        firsts.append(a[exact])
        seconds.append(b[exact])
    first, second = np.concatenate(firsts), np.concatenate(seconds)
    keys = np.minimum(first, second) * n_examples + np.maximum(first, second)
    keys.sort()  # sort + neighbour test: much faster here than np.unique's hash table
    keys = keys[np.r_[True, keys[1:] != keys[:-1]]] if keys.size else keys
    return keys // n_examples, keys % n_examples


def build_pairs(labels: np.ndarray, pairs_per_example: float, rng: np.random.Generator, max_rounds: int = 256) -> Pairs:
    """Unique unordered pairs of distinct examples, the same number for every similarity target.

    For ``L`` label levels the targets are ``j / L`` for ``j`` agreeing levels. Candidates for
    target ``j / L`` come from shuffling the examples within groups that share their first ``j``
    levels (all examples for ``j = 0``), each round giving at most one partner per example, so the
    work stays linear in the number of examples (no n-squared index lists).
    """
    labels = np.asarray(labels)
    labels = labels.reshape(labels.shape[0], -1)
    n_examples, n_levels = labels.shape
    empty = Pairs(np.empty(0, int), np.empty(0, int), np.empty(0, float))
    if n_examples < 2:
        return empty
    codes = _prefix_codes(labels)
    n_targets = n_levels + 1
    quota = max(1, int(round(pairs_per_example * n_examples / n_targets)))

    per_target = []
    for agreeing in range(n_targets):
        rounds = max(1, int(np.ceil(1.25 * quota / n_examples)))
        while True:
            first, second = _candidates(codes, agreeing, rounds, rng)
            if first.size >= quota or rounds >= max_rounds:
                break
            rounds = min(max_rounds, rounds * 4)
        chosen = rng.permutation(first.size)[:quota]
        per_target.append((first[chosen], second[chosen]))

    reachable = [pair for pair in per_target if pair[0].size]
    if not reachable:
        return empty
    count = min(pair[0].size for pair in reachable)
    first = np.concatenate([pair[0][:count] for pair in reachable])
    second = np.concatenate([pair[1][:count] for pair in reachable])
    order = rng.permutation(first.size)
    first, second = first[order], second[order]
    swap = rng.random(first.size) < 0.5  # neither side of a pair is systematically the smaller index
    first, second = np.where(swap, second, first), np.where(swap, first, second)
    return Pairs(first, second, pair_scores(codes, first, second))


def jaccard(indicator: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """|A ∩ B| / |A ∪ B| of the label sets of each pair (rows of a 0/1 matrix); two empty sets are alike (1)."""
    a, b = indicator[first] > 0, indicator[second] > 0
    union = (a | b).sum(axis=1)
    return np.where(union > 0, (a & b).sum(axis=1) / np.maximum(union, 1), 1.0).astype(float)


def build_label_set_pairs(indicator: np.ndarray, pairs_per_example: float, rng: np.random.Generator, max_rounds: int = 64) -> Pairs:
    """Unique unordered pairs for multi-label rows (a 0/1 matrix, rows x labels), scored by the Jaccard similarity of
    their label sets: overlapping sets count as partly similar, as hierarchical labels do in :func:`build_pairs`.

    Half the pairs are related (each example with a random example that shares one of its labels, chosen at random),
    half are any two examples; each round gives every example at most one partner of each kind, so the work stays
    linear in the number of examples (no n-squared lists).
    """
    indicator = np.asarray(indicator) > 0
    n_examples = indicator.shape[0]
    empty = Pairs(np.empty(0, int), np.empty(0, int), np.empty(0, float))
    if n_examples < 2:
        return empty
    quota = max(1, int(round(pairs_per_example * n_examples / 2)))
    rows, labels = np.nonzero(indicator)  # CSR of example -> labels (rows sorted)
    per_example = np.bincount(rows, minlength=n_examples)
    example_start = np.r_[0, np.cumsum(per_example)[:-1]]
    order = np.argsort(labels, kind="stable")  # CSR of label -> members
    members, per_label = rows[order], np.bincount(labels, minlength=indicator.shape[1])
    label_start = np.r_[0, np.cumsum(per_label)[:-1]]
    labelled = np.flatnonzero(per_example > 0)

    def related(rounds: int) -> tuple[np.ndarray, np.ndarray]:
        first = np.tile(labelled, rounds)
        label = labels[example_start[first] + rng.integers(0, per_example[first])]
        second = members[label_start[label] + rng.integers(0, per_label[label])]
        return first, second

    def anything(rounds: int) -> tuple[np.ndarray, np.ndarray]:
        return np.tile(np.arange(n_examples), rounds), rng.integers(0, n_examples, size=n_examples * rounds)

    halves = []
    for draw in (related, anything):
        rounds = max(1, int(np.ceil(1.25 * quota / n_examples)))
        while True:
            first, second = draw(rounds) if (draw is anything or labelled.size) else (np.empty(0, int), np.empty(0, int))
            keep = first != second
            low, high = np.minimum(first[keep], second[keep]), np.maximum(first[keep], second[keep])
            _, unique = np.unique(low * n_examples + high, return_index=True)
            if unique.size >= quota or rounds >= max_rounds or not first.size:
                break
            rounds = min(max_rounds, rounds * 4)
        chosen = rng.permutation(unique)[:quota]
        halves.append((low[chosen], high[chosen]))
    first = np.concatenate([half[0] for half in halves])
    second = np.concatenate([half[1] for half in halves])
    _, unique = np.unique(first * n_examples + second, return_index=True)  # a pair drawn by both halves counts once
    first, second = first[unique], second[unique]
    shuffled = rng.permutation(first.size)
    first, second = first[shuffled], second[shuffled]
    swap = rng.random(first.size) < 0.5
    first, second = np.where(swap, second, first), np.where(swap, first, second)
    return Pairs(first, second, jaccard(indicator, first, second))
