"""Shared fixtures: a tiny randomly initialised BERT (a few hundred KB) and a small toy dataset."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = Path(__file__).resolve().parents[2] / "shared"

TOPICS = {
    "sport": ["team", "match", "goal", "coach", "league", "player", "score", "season"],
    "weather": ["rain", "sunny", "cloud", "storm", "wind", "snow", "forecast", "cold"],
    "food": ["pizza", "bread", "cheese", "soup", "salad", "dinner", "recipe", "spicy"],
}
FILLER = ["the", "a", "is", "was", "very", "today", "and", "of", "in", "it", "this", "for", "to", "with"]


def toy_rows(n_per_class: dict[str, int], seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for label, count in n_per_class.items():
        for _ in range(count):
            words = rng.sample(TOPICS[label], 3) + rng.sample(FILLER, 3)
            rng.shuffle(words)
            rows.append({"text": " ".join(words), "label": label})
    rng.shuffle(rows)
    return rows


def build_tiny_encoder(folder: Path, architecture: str = "bert", normalize: bool = True) -> Path:
    """A sentence-transformers folder with a 2-layer, 32-wide random encoder over the toy vocabulary."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast, MPNetConfig, MPNetModel, MPNetTokenizerFast

    checkpoint = folder / f"{architecture}-checkpoint"
    checkpoint.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] if architecture == "bert" else ["<s>", "<pad>", "</s>", "[UNK]", "<unk>", "<mask>"]
    words = sorted({w for topic in TOPICS.values() for w in topic} | set(FILLER) | {"new", "game", "team", "hot", "day"})
    vocabulary = {token: i for i, token in enumerate(specials + words + list("abcdefghijklmnopqrstuvwxyz"))}
    sizes = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    torch_seed = __import__("torch").manual_seed(0)
    del torch_seed
    if architecture == "bert":
        tokenizer = BertTokenizerFast(vocab=vocabulary)
        model = BertModel(BertConfig(vocab_size=len(tokenizer), **sizes))
    else:
        tokenizer = MPNetTokenizerFast(vocab=vocabulary)
        model = MPNetModel(MPNetConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **sizes))
    model.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    transformer = Transformer(str(checkpoint), max_seq_length=64)
    modules = [transformer, Pooling(32, "mean")] + ([Normalize()] if normalize else [])
    target = folder / f"{architecture}-st"
    SentenceTransformer(modules=modules, device="cpu").save(str(target), create_model_card=False)
    return target


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    return str(build_tiny_encoder(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="session")
def tiny_mpnet(tmp_path_factory) -> str:
    return str(build_tiny_encoder(tmp_path_factory.mktemp("tiny-mpnet"), "mpnet"))


@pytest.fixture()
def toy() -> tuple[list[str], np.ndarray]:
    """72 balanced toy texts and their class codes (food 0, sport 1, weather 2)."""
    rows = toy_rows({"sport": 24, "weather": 24, "food": 24}, seed=5)
    names = sorted({r["label"] for r in rows})
    return [r["text"] for r in rows], np.array([names.index(r["label"]) for r in rows])


@pytest.fixture()
def toy_folder(tmp_path) -> Path:
    """train.jsonl (imbalanced), test.jsonl: the layout of ../shared/datasets/*."""
    folder = tmp_path / "toy"
    folder.mkdir()
    pd.DataFrame(toy_rows({"sport": 40, "weather": 24, "food": 8}, seed=1)).to_json(folder / "train.jsonl", orient="records", lines=True)
    pd.DataFrame(toy_rows({"sport": 10, "weather": 10, "food": 10}, seed=2)).to_json(folder / "test.jsonl", orient="records", lines=True)
    return folder


FAST = {
    "dae": {"epochs": 1, "batch_size": 16, "learning_rate": 1e-3, "min_steps": 0},
    "cl": {"epochs": 1, "batch_size": 16, "learning_rate": 1e-3, "pairs_per_example": 2, "min_steps": 0},
    "joint": {"epochs": 1, "batch_size": 16, "learning_rate": 1e-3, "pairs_per_example": 2, "min_steps": 0},
    "ft": {"epochs": 2, "min_steps": 0, "batch_size": 16, "learning_rate": 1e-3, "head_size": 16, "patience": 2},
}


@pytest.fixture()
def fast_options(tiny_model) -> dict:
    # Tests train on toy folders without a validation split; the default refit on all labels would train twice.
    return {"model": tiny_model, "seed": 0, "refit_on_all_labels": "never", **{k: dict(v) for k, v in FAST.items()}}
