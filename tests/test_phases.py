"""Each phase lowers its own loss on a toy set (tiny random encoder)."""

import numpy as np
import pytest
import torch
from conftest import toy_rows
from sentence_transformers import SentenceTransformer
from transformers import TrainerCallback

from phasefit.config import CLConfig, DAEConfig, FTConfig, JointConfig
from phasefit.losses import DenoisingLoss
from phasefit.phases.cl import train_cl, with_projection
from phasefit.phases.common import PhaseRun, first_token_bottleneck
from phasefit.phases.dae import train_dae
from phasefit.phases.ft import FTData, train_ft
from phasefit.phases.joint import train_joint


@pytest.fixture()
def toy():
    rows = toy_rows({"sport": 24, "weather": 24, "food": 24}, seed=5)
    texts = [r["text"] for r in rows]
    names = sorted({r["label"] for r in rows})
    labels = np.array([[names.index(r["label"])] for r in rows])
    return texts, labels


def test_dae_lowers_reconstruction_loss_and_keeps_the_encoder(tiny_model, toy, tmp_path):
    encoder = SentenceTransformer(tiny_model, device="cpu")
    before = encoder.encode(["the team won"])
    trained, stats = train_dae(encoder, toy[0] * 3, DAEConfig(epochs=2, batch_size=16, learning_rate=2e-3, min_steps=0), PhaseRun(0, tmp_path, []))
    assert trained is encoder and stats["tied_decoder"] == 1.0
    assert stats["last_logged_loss"] < stats["first_logged_loss"]
    assert not np.allclose(before, trained.encode(["the team won"]))
    assert type(list(trained)[-1]).__name__ == "Normalize"


def test_a_cls_bottleneck_trains_the_encoder_and_leaves_its_pooling_alone(tiny_model, toy, tmp_path):
    encoder = SentenceTransformer(tiny_model, device="cpu")
    modules_before = [type(module).__name__ for module in encoder]
    before = encoder.encode(["the team won"])
    config = DAEConfig(epochs=2, batch_size=16, learning_rate=2e-3, min_steps=0, pooling="cls")
    trained, stats = train_dae(encoder, toy[0] * 3, config, PhaseRun(0, tmp_path, []))
    assert trained is encoder and [type(module).__name__ for module in trained] == modules_before
    assert trained[1].get_config_dict()["pooling_mode"] != "cls"
    assert stats["last_logged_loss"] < stats["first_logged_loss"]
    assert not np.allclose(before, trained.encode(["the team won"]))


def test_the_cls_bottleneck_is_the_first_tokens_embedding_on_shared_weights(tiny_model):
    encoder = SentenceTransformer(tiny_model, device="cpu")
    bottleneck = first_token_bottleneck(encoder)
    tokens = encoder.encode(["the team won"], output_value="token_embeddings")[0]
    assert np.allclose(bottleneck.encode(["the team won"])[0], tokens[0].numpy(), atol=1e-5)
    assert bottleneck[0] is encoder[0]


def test_tied_decoder_starts_from_the_encoders_current_weights(tiny_model):
    encoder = SentenceTransformer(tiny_model, device="cpu")
    with torch.no_grad():
        encoder.transformers_model.embeddings.word_embeddings.weight.add_(1.0)
    expected = encoder.transformers_model.embeddings.word_embeddings.weight.clone()
    loss = DenoisingLoss(encoder)
    assert torch.equal(loss.decoder.get_input_embeddings().weight, expected)
    assert loss.decoder.get_input_embeddings().weight is encoder.transformers_model.embeddings.word_embeddings.weight


def test_mpnet_gets_a_working_fallback_decoder(tiny_mpnet, toy, tmp_path, caplog):
    encoder = SentenceTransformer(tiny_mpnet, device="cpu")
    trained, stats = train_dae(encoder, toy[0] * 3, DAEConfig(epochs=2, batch_size=16, learning_rate=2e-3, min_steps=0), PhaseRun(0, tmp_path, []))
    assert stats["tied_decoder"] == 0.0
    assert stats["last_logged_loss"] < stats["first_logged_loss"]
    assert "untied BERT decoder" in caplog.text


def test_contrastive_lowers_cosine_loss_and_adds_one_projection(tiny_model, toy, tmp_path):
    encoder = SentenceTransformer(tiny_model, device="cpu")
    config = CLConfig(epochs=3, batch_size=16, learning_rate=2e-3, pairs_per_example=4, min_steps=0)
    trained, stats = train_cl(encoder, toy[0], toy[1], config, PhaseRun(0, tmp_path, []))
    assert stats["last_logged_loss"] < stats["first_logged_loss"]
    names = [type(m).__name__ for m in trained]
    assert names == ["Transformer", "Pooling", "Dense", "Normalize"]
    assert len(list(with_projection(trained))) == 4


def test_gradient_accumulation_takes_the_steps_of_the_larger_batch(tiny_model, toy, tmp_path):
    runs = {}
    for batch, accumulation in ((16, 1), (8, 2)):
        encoder = SentenceTransformer(tiny_model, device="cpu")
        config = CLConfig(epochs=1, batch_size=batch, gradient_accumulation=accumulation, learning_rate=2e-3, min_steps=0)
        runs[(batch, accumulation)] = train_cl(encoder, toy[0], toy[1], config, PhaseRun(0, tmp_path / f"{batch}", []))[1]
    assert runs[(8, 2)]["steps"] == runs[(16, 1)]["steps"]
    assert runs[(8, 2)]["effective_batch_size"] == runs[(16, 1)]["effective_batch_size"] == 16
    assert runs[(8, 2)]["first_logged_loss"] == pytest.approx(runs[(16, 1)]["first_logged_loss"], rel=0.05)


def test_a_saved_and_reloaded_projection_is_not_added_twice(tiny_model, tmp_path):
    projected = with_projection(SentenceTransformer(tiny_model, device="cpu"))
    projected.save(str(tmp_path / "saved"))
    reloaded = SentenceTransformer(str(tmp_path / "saved"), device="cpu")
    assert [type(m).__name__ for m in with_projection(reloaded)] == ["Transformer", "Pooling", "Dense", "Normalize"]


def test_projection_starts_as_identity(tiny_model):
    encoder = SentenceTransformer(tiny_model, device="cpu")
    assert np.allclose(encoder.encode(["rain and snow"]), with_projection(encoder).encode(["rain and snow"]), atol=1e-6)


def test_joint_lowers_both_losses(tiny_model, toy, tmp_path):
    encoder = SentenceTransformer(tiny_model, device="cpu")
    config = JointConfig(epochs=3, batch_size=16, learning_rate=2e-3, pairs_per_example=4, min_steps=0)
    trained, stats = train_joint(encoder, toy[0], toy[1], toy[0], config, PhaseRun(0, tmp_path, []))
    assert stats["last_logged_loss"] < stats["first_logged_loss"]


def test_classifier_learns_the_toy_task(tiny_model, toy, tmp_path):
    encoder = SentenceTransformer(tiny_model, device="cpu")
    texts, labels = toy
    config = FTConfig(epochs=30, min_steps=0, batch_size=16, learning_rate=1e-3, head_learning_rate=5e-3, head_size=32, patience=5)
    head, stats = train_ft(encoder, FTData(texts[:54], labels[:54, -1], texts[54:], labels[54:, -1], 3), config, PhaseRun(0, tmp_path / "ft", []))
    embeddings = torch.as_tensor(encoder.encode(texts[54:]))
    accuracy = (head(embeddings).argmax(-1).numpy() == labels[54:, -1]).mean()
    assert accuracy >= 0.8
    assert stats["evaluations"] >= 2


def test_early_stopping_waits_for_min_steps(tiny_model, toy, tmp_path):
    encoder = SentenceTransformer(tiny_model, device="cpu")
    texts, labels = toy
    # Nothing learns (frozen encoder, head learning rate 0): the validation loss never improves after the first evaluation.
    config = FTConfig(epochs=1, min_steps=40, batch_size=16, freeze_encoder=True, head_learning_rate=0.0, head_size=8, patience=1, metric="loss")
    _, stats = train_ft(encoder, FTData(texts[:54], labels[:54, -1], texts[54:], labels[54:, -1], 3), config, PhaseRun(0, tmp_path / "ft", []))
    assert stats["steps"] == 40 and stats["evaluations"] == 4
    config.min_steps = 0
    config.epochs = 10
    _, stats = train_ft(encoder, FTData(texts[:54], labels[:54, -1], texts[54:], labels[54:, -1], 3), config, PhaseRun(0, tmp_path / "ft-2", []))
    assert stats["steps"] == 20  # patience 1: the second evaluation without improvement ends it


def test_a_resumed_run_keeps_the_early_stopping_count(tiny_model, toy, tmp_path):
    class Interrupt(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 30:
                raise KeyboardInterrupt

    encoder = SentenceTransformer(tiny_model, device="cpu")
    texts, labels = toy
    # Nothing learns, so evaluations at steps 10, 20, 30, 40 count 0, 1, 2, 3 without improvement: patience 3 ends it at 40.
    config = FTConfig(epochs=20, min_steps=0, batch_size=16, freeze_encoder=True, head_learning_rate=0.0, head_size=8, patience=3, metric="loss")
    data = FTData(texts[:54], labels[:54, -1], texts[54:], labels[54:, -1], 3)
    with pytest.raises(KeyboardInterrupt):
        train_ft(encoder, data, config, PhaseRun(0, tmp_path / "ft", [Interrupt()], checkpoint_steps=1))
    _, stats = train_ft(encoder, data, config, PhaseRun(0, tmp_path / "ft", [], checkpoint_steps=1))
    assert stats["resumed_from_step"] == 30
    assert stats["steps"] == 40, "the resumed run forgot the evaluations without improvement it had already counted"


def test_frozen_encoder_is_not_changed(tiny_model, toy, tmp_path):
    encoder = SentenceTransformer(tiny_model, device="cpu")
    before = [p.clone() for p in encoder.parameters()]
    texts, labels = toy
    config = FTConfig(epochs=2, min_steps=0, batch_size=16, freeze_encoder=True, head_size=8)
    train_ft(encoder, FTData(texts[:54], labels[:54, -1], texts[54:], labels[54:, -1], 3), config, PhaseRun(0, tmp_path / "ft", []))
    assert all(torch.equal(a, b) for a, b in zip(before, encoder.parameters()))


def test_only_the_decoder_weights_outside_the_encoder_are_averaged_by_hand(tiny_model, tmp_path):
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainingArguments

    from phasefit.phases.common import _SentenceTrainer, common_arguments

    encoder = SentenceTransformer(tiny_model, device="cpu")
    loss = DenoisingLoss(encoder)
    arguments = SentenceTransformerTrainingArguments(**common_arguments(DAEConfig(), 0, tmp_path))
    dataset = Dataset.from_dict({"damaged": ["rain"], "original": ["rain today"]})
    trainer = _SentenceTrainer(model=encoder, args=arguments, train_dataset=dataset, loss=loss)
    by_hand = {id(p) for p in trainer._loss_only_parameters()}
    assert by_hand and not by_hand & {id(p) for p in encoder.parameters()}
    cross_attention = [p for name, p in loss.decoder.named_parameters() if "crossattention" in name]
    assert cross_attention and all(id(p) in by_hand for p in cross_attention)
