"""Any encoder family works through every kind of phase (tiny random configs; plain transformers checkpoints)."""

import pytest
from conftest import FAST, FILLER, TOPICS
from transformers import AutoConfig, AutoModel, BertTokenizerFast

from phasefit import train

SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
FAMILIES = {
    "bert": ({}, True),
    "roberta": ({"pad_token_id": 0}, True),
    "xlm-roberta": ({"pad_token_id": 0}, True),
    "electra": ({"embedding_size": 32}, True),
    "distilbert": ({"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64, "max_position_embeddings": 128}, False),
    "deberta-v2": ({}, False),
    "mpnet": ({"pad_token_id": 0}, False),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_runs_3phase_and_joint(family, tmp_path, toy_folder):
    extra, has_decoder_class = FAMILIES[family]
    words = sorted({w for topic in TOPICS.values() for w in topic} | set(FILLER))
    vocabulary = {token: i for i, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    sizes = extra if family == "distilbert" else {**SIZES, **extra}
    checkpoint = tmp_path / family
    AutoModel.from_config(AutoConfig.for_model(family, vocab_size=len(vocabulary), **sizes)).save_pretrained(checkpoint)
    BertTokenizerFast(vocab=vocabulary).save_pretrained(checkpoint)
    options = {"model": str(checkpoint), "seed": 0, **FAST}
    three = train(toy_folder, options, recipe="3phase")
    assert three.phase_stats["dae"]["tied_decoder"] == float(has_decoder_class)
    joint = train(toy_folder, options, recipe="joint")
    assert joint.test_metrics["n_examples"] == 30 and three.test_metrics["n_examples"] == 30
