"""Options beyond the paper: class names as text, the prototype head, LP-FT's head warm-up, the
supervised contrastive term in FT (with the class names as batch members), self-training on the unlabelled pool,
WiSE-FT's weight interpolation and the logistic-regression head refit."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sentence_transformers import SentenceTransformer
from typer.testing import CliRunner

from phasefit import PhaseFitModel, train
from phasefit.cli import app
from phasefit.config import FTConfig
from phasefit.errors import ConfigError, DataError, ModelFilesError
from phasefit.label_names import label_texts, read_label_descriptions, say_nothing
from phasefit.losses import SupervisedContrastiveLoss
from phasefit.model import EncoderClassifier, LinearHead, PrototypeHead, head_from_config
from phasefit.phases.common import PhaseRun
from phasefit.phases.ft import (
    FTData,
    interpolate_weights,
    new_head,
    refit_logistic_head,
    starting_weights,
    train_ft,
)
from phasefit.pipeline import _names_as_read


@pytest.mark.parametrize(
    "labels, expected",
    [
        (["atis_flight", "atis_airfare", "atis_flight#atis_airfare", "atis_ground_service"], ["flight", "airfare", "flight and airfare", "ground service"]),
        (["PlayMusic", "AddToPlaylist", "GetWeather"], ["play music", "add to playlist", "get weather"]),
        (["Business", "Sci/Tech", "World"], ["business", "sci tech", "world"]),
        (["very negative", "neutral"], ["very negative", "neutral"]),
        (["intent-a", "intent-b"], ["a", "b"]),
        (["0", "1"], ["0", "1"]),
    ],
)
def test_label_names_become_words(labels, expected):
    assert label_texts(labels) == expected


def test_label_descriptions_override_names_and_bad_files_are_named(tmp_path):
    good = tmp_path / "labels.yaml"
    good.write_text(yaml.safe_dump({"0": "a bad review", "1": "a good review"}))
    assert label_texts(["0", "1"], read_label_descriptions(good, ["0", "1"])) == ["a bad review", "a good review"]
    tsv = tmp_path / "labels.tsv"
    tsv.write_text("0\tnegative\n1\tpositive\n")
    assert read_label_descriptions(tsv) == {"0": "negative", "1": "positive"}
    cases = {
        "missing.yaml": (None, "no such file"),
        "list.yaml": ("- a\n- b\n", "expected a mapping"),
        "broken.json": ("{'0': ", "not valid JSON"),
        "empty.yaml": ("'0': ''\n", "label '0' needs a non-empty text description"),
        "unknown.yaml": ("'7': seven\n", "'7' not among the training labels"),
        "columns.tsv": ("0\tnegative\textra\n", "line 1: write 'label<TAB>description'"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_text(content)
        with pytest.raises(DataError, match=message) as error:
            read_label_descriptions(path, ["0", "1"])
        assert name in str(error.value)


def test_prototype_head_scores_scaled_cosine_to_each_class_vector():
    head = PrototypeHead(3, 2, scale=10.0).initialise(torch.tensor([[2.0, 0, 0], [0, 0, 5.0]]))
    logits = head(torch.tensor([[1.0, 0, 0], [0, 3.0, 3.0]]))
    assert torch.allclose(logits, torch.tensor([[10.0, 0.0], [0.0, 10.0 / 2**0.5]]), atol=1e-5)
    with pytest.raises(ValueError, match=r"\(3, 3\) prototype vectors given for a head of shape \(2, 3\)"):
        head.initialise(torch.zeros(3, 3))
    assert isinstance(head_from_config(head.config()), PrototypeHead)
    assert (
        head_from_config({"input_size": 3, "hidden_size": 4, "n_classes": 2, "dropout": 0.1}).config()["kind"] == "mlp"
    )  # models saved before heads had kinds
    with pytest.raises(ModelFilesError, match="head kind 'tree'"):
        head_from_config({"kind": "tree"})


def test_prototypes_start_from_the_class_names_or_the_class_means(tiny_model, toy):
    texts, labels = toy
    encoder = SentenceTransformer(tiny_model, device="cpu")
    data = FTData(texts, labels, texts, labels, 3, ["food", "sport", "weather"])
    names = encoder.encode(["food", "sport", "weather"], convert_to_tensor=True, normalize_embeddings=True)
    from_names = new_head(encoder, data, FTConfig(head="prototype", prototype_init="names"), 0)
    assert torch.allclose(from_names.prototypes, names, atol=1e-5)
    embeddings = encoder.encode(texts, convert_to_tensor=True, normalize_embeddings=True)
    means = torch.nn.functional.normalize(torch.stack([embeddings[torch.as_tensor(labels == code)].mean(0) for code in range(3)]), dim=-1)
    assert torch.allclose(new_head(encoder, data, FTConfig(head="prototype", prototype_init="means"), 0).prototypes, means, atol=1e-5)
    both = new_head(encoder, data, FTConfig(head="prototype", prototype_init="names+means"), 0).prototypes
    assert torch.allclose(both, torch.nn.functional.normalize(names + means, dim=-1), atol=1e-5)
    with pytest.raises(ConfigError, match="needs the class names"):
        new_head(encoder, FTData(texts, labels, texts, labels, 3), FTConfig(head="prototype"), 0)


def test_supervised_contrastive_loss_matches_its_definition_and_is_zero_without_partners():
    loss = SupervisedContrastiveLoss(temperature=0.5)
    embeddings = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], requires_grad=True)
    value = loss(embeddings, torch.tensor([0, 0, 1]))
    similarity = (embeddings @ embeddings.T / 0.5).detach()
    expected = []
    for anchor, partner, other in ((0, 1, 2), (1, 0, 2)):
        expected.append(-(similarity[anchor, partner] - torch.logsumexp(similarity[anchor, [partner, other]], 0)))
    assert value.item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-5)
    alone = loss(embeddings, torch.tensor([0, 1, 2]))
    alone.backward()
    assert alone.item() == 0.0 and torch.isfinite(embeddings.grad).all()
    tight = loss(torch.tensor([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0]]), torch.tensor([0, 0, 1]))
    assert tight < value  # same-class embeddings closer: lower loss


def test_contrastive_term_joins_cross_entropy_in_training_only(tiny_model, toy):
    texts, labels = toy
    encoder = SentenceTransformer(tiny_model, device="cpu")
    head = PrototypeHead(32, 3)
    classifier = EncoderClassifier(encoder, head, SupervisedContrastiveLoss(0.1), contrastive_weight=0.5)
    features = encoder.tokenize(texts[:8])
    target = torch.as_tensor(labels[:8])
    classifier.eval()
    with torch.no_grad():
        evaluated = classifier(labels=target, **features)
        embeddings = encoder(dict(features))["sentence_embedding"]
    cross_entropy = torch.nn.functional.cross_entropy(head(embeddings), target)
    assert evaluated["loss"].item() == pytest.approx(cross_entropy.item(), rel=1e-5)
    classifier.train()
    encoder.eval()  # no dropout, so that the two passes see the same embeddings
    with torch.no_grad():
        trained = classifier(labels=target, **features)
    expected = cross_entropy + 0.5 * SupervisedContrastiveLoss(0.1)(embeddings, target)
    assert trained["loss"].item() == pytest.approx(expected.item(), rel=1e-4)


def test_names_in_batch_join_the_contrastive_term_as_members_of_their_class(tiny_model, toy):
    texts, labels = toy
    encoder = SentenceTransformer(tiny_model, device="cpu")
    names = encoder.tokenize(["sport", "weather", "food"])
    classifier = EncoderClassifier(encoder, PrototypeHead(32, 3), SupervisedContrastiveLoss(0.1), 0.5, class_features=names)
    features = encoder.tokenize(texts[:8])
    target = torch.as_tensor(labels[:8])
    classifier.train()
    encoder.eval()  # no dropout: the passes below see the same embeddings
    with torch.no_grad():
        trained = classifier(labels=target, **features)
        embeddings = encoder(dict(features))["sentence_embedding"]
        name_embeddings = encoder(dict(names))["sentence_embedding"]
    cross_entropy = torch.nn.functional.cross_entropy(classifier.head(embeddings), target)
    members = torch.cat([embeddings, name_embeddings])
    expected = cross_entropy + 0.5 * SupervisedContrastiveLoss(0.1)(members, torch.cat([target, torch.arange(3)]))
    assert trained["loss"].item() == pytest.approx(expected.item(), rel=1e-4)
    assert trained["loss"].item() != pytest.approx((cross_entropy + 0.5 * SupervisedContrastiveLoss(0.1)(embeddings, target)).item(), rel=1e-4)
    assert not any(key.startswith("class_") for key in classifier.state_dict())  # the names are not saved with the weights


def test_names_in_batch_needs_a_contrastive_term_and_trains_the_names_in(tiny_model, toy, tmp_path):
    from phasefit.config import build_config

    with pytest.raises(ConfigError, match="ft.names_in_batch .* ft.contrastive_weight > 0"):
        build_config({"ft": {"names_in_batch": True}})
    texts, labels = toy
    config = FTConfig(epochs=2, min_steps=0, batch_size=16, learning_rate=1e-3, patience=5, head="prototype", contrastive_weight=0.5, names_in_batch=True)
    with pytest.raises(ConfigError, match="needs the class names"):
        train_ft(
            SentenceTransformer(tiny_model, device="cpu"),
            FTData(texts[:54], labels[:54], texts[54:], labels[54:], 3),
            config,
            PhaseRun(0, tmp_path / "no-names"),
        )
    trained = {}
    for with_names in (True, False):
        encoder = SentenceTransformer(tiny_model, device="cpu")
        run_config = FTConfig(**{**config.__dict__, "names_in_batch": with_names})
        train_ft(
            encoder,
            FTData(texts[:54], labels[:54], texts[54:], labels[54:], 3, class_texts=["sport", "weather", "food"]),
            run_config,
            PhaseRun(0, tmp_path / str(with_names)),
        )
        trained[with_names] = _encoder_weights(encoder)
    assert not all(torch.equal(trained[True][name], trained[False][name]) for name in trained[True])  # the names changed the encoder's updates


def _encoder_weights(encoder):
    return {name: tensor.detach().clone() for name, tensor in encoder.state_dict().items()}


def test_interpolate_weights_mixes_each_floating_weight_once_even_when_tied():
    module = torch.nn.Sequential(torch.nn.Embedding(4, 3), torch.nn.Linear(3, 4, bias=False))
    module[1].weight = module[0].weight  # tied: one tensor under two names
    module.register_buffer("steps", torch.tensor([7]))
    start = starting_weights(module)
    assert "steps" not in start
    with torch.no_grad():
        module[0].weight.add_(2.0)
    interpolate_weights(module, start, 0.25)
    assert torch.allclose(module[0].weight, start["0.weight"] + 0.5)  # 0.25 * (w + 2) + 0.75 * w, not mixed twice
    assert module.steps.item() == 7


def test_weight_interpolation_returns_the_mix_of_start_and_fine_tuned_weights(tiny_model, toy, tmp_path):
    texts, labels = toy
    config = FTConfig(epochs=3, min_steps=0, batch_size=16, learning_rate=1e-3, patience=5, head="prototype", prototype_init="means")
    start = _encoder_weights(SentenceTransformer(tiny_model, device="cpu"))
    trained, stats = {}, {}
    for share in (1.0, 0.5):
        encoder = SentenceTransformer(tiny_model, device="cpu")
        run_config = FTConfig(**{**config.__dict__, "weight_interpolation": share})
        _, stats[share] = train_ft(encoder, FTData(texts[:54], labels[:54], texts[54:], labels[54:], 3), run_config, PhaseRun(0, tmp_path / str(share)))
        trained[share] = _encoder_weights(encoder)
    moved = [name for name in start if start[name].is_floating_point() and not torch.allclose(start[name], trained[1.0][name])]
    assert moved
    for name in moved:
        assert torch.allclose(trained[0.5][name], (start[name] + trained[1.0][name]) / 2, atol=1e-6)
    assert stats[0.5]["validation_before_interpolation"] == pytest.approx(stats[1.0]["best_validation_accuracy"])
    assert "validation_before_interpolation" not in stats[1.0]
    with pytest.raises(ConfigError, match="weight_interpolation"):
        from phasefit.config import build_config

        build_config({"ft": {"weight_interpolation": 0}})


@pytest.mark.parametrize("n_classes", [2, 3])
def test_logistic_refit_gives_the_regressions_probabilities_and_saves_as_a_linear_head(tiny_model, toy, tmp_path, n_classes):
    from sklearn.linear_model import LogisticRegression

    texts, labels = toy
    keep = labels < n_classes
    texts, labels = [t for t, k in zip(texts, keep) if k], labels[keep]
    encoder = SentenceTransformer(tiny_model, device="cpu")
    data = FTData(texts[:30], labels[:30], texts[30:], labels[30:], n_classes + 1)  # the last class has no labelled text
    head, stats = refit_logistic_head(encoder, data, FTConfig(), 0, {"best_validation_accuracy": 0.25})
    assert isinstance(head, LinearHead) and stats["validation_before_refit"] == 0.25
    expected = LogisticRegression(max_iter=1000, random_state=0).fit(encoder.encode(texts[:30]), labels[:30])
    model = PhaseFitModel(encoder, head, [str(code) for code in range(n_classes + 1)])
    probabilities = model.predict_proba(texts[30:])
    assert np.allclose(probabilities[:, :n_classes], expected.predict_proba(encoder.encode(texts[30:])), atol=1e-4)
    assert np.all(probabilities[:, n_classes] < 1e-6)
    assert stats["best_validation_accuracy"] == pytest.approx(float(np.mean(probabilities.argmax(axis=1) == labels[30:])))
    model.save_pretrained(tmp_path / "saved")
    assert np.allclose(PhaseFitModel.from_pretrained(tmp_path / "saved", device="cpu").predict_proba(texts[30:]), probabilities, atol=1e-6)
    with pytest.raises(ConfigError, match="at least two classes"):
        refit_logistic_head(encoder, FTData(texts[:3], np.zeros(3, dtype=np.int64), [], np.array([]), 2), FTConfig(), 0, {"best_validation_accuracy": 0.0})


def test_head_refit_replaces_the_trained_head(tiny_model, toy, tmp_path):
    texts, labels = toy
    config = FTConfig(epochs=1, min_steps=0, batch_size=16, learning_rate=1e-3, patience=5, head="prototype", prototype_init="means", head_refit="logistic")
    head, stats = train_ft(
        SentenceTransformer(tiny_model, device="cpu"), FTData(texts[:54], labels[:54], texts[54:], labels[54:], 3), config, PhaseRun(0, tmp_path)
    )
    assert isinstance(head, LinearHead) and "validation_before_refit" in stats and stats["steps"] >= 1


def test_head_warmup_keeps_the_encoder_still_while_the_head_learns(tiny_model, toy, tmp_path):
    texts, labels = toy
    config = FTConfig(epochs=4, min_steps=0, batch_size=16, learning_rate=1e-3, head_size=16, patience=10, head_warmup_steps=1000)
    encoder = SentenceTransformer(tiny_model, device="cpu")
    before = _encoder_weights(encoder)
    head, stats = train_ft(encoder, FTData(texts[:54], labels[:54], texts[54:], labels[54:], 3), config, PhaseRun(0, tmp_path / "frozen"))
    assert stats["steps"] >= 8
    assert all(torch.equal(before[name], tensor) for name, tensor in encoder.state_dict().items())
    encoder = SentenceTransformer(tiny_model, device="cpu")
    train_ft(
        encoder,
        FTData(texts[:54], labels[:54], texts[54:], labels[54:], 3),
        FTConfig(**{**config.__dict__, "head_warmup_steps": 2}),
        PhaseRun(0, tmp_path / "lpft"),
    )
    assert not all(torch.equal(before[name], tensor) for name, tensor in encoder.state_dict().items())


def test_a_prototype_run_reads_descriptions_and_round_trips(toy_folder, fast_options, tmp_path):
    descriptions = tmp_path / "labels.json"
    descriptions.write_text(json.dumps({"food": "cooking and meals", "sport": "a team game"}))
    options = {
        **fast_options,
        "label_descriptions": str(descriptions),
        "ft": {**fast_options["ft"], "head": "prototype", "contrastive_weight": 0.1, "head_warmup_steps": 1},
    }
    result = train(toy_folder, options, recipe="ft")
    model = result.model
    assert isinstance(model.head, PrototypeHead)
    saved = model.save_pretrained(tmp_path / "model")
    assert json.loads((saved / "phasefit.json").read_text())["head"]["kind"] == "prototype"
    loaded = PhaseFitModel.from_pretrained(saved)
    probe = ["rain and snow today", "pizza with cheese", "the coach of the team was very happy with the match"]
    assert np.allclose(loaded.predict_proba(probe), model.predict_proba(probe), atol=1e-5)
    pytest.importorskip("onnxruntime")
    from phasefit.deploy.export import export_onnx, onnx_predict_proba

    exported = export_onnx(saved, tmp_path / "onnx")
    assert np.abs(onnx_predict_proba(exported, probe) - model.predict_proba(probe)).max() < 1e-4


def test_class_names_without_words_under_a_name_initialised_head_are_a_note_that_points_to_descriptions(toy_folder, fast_options, tmp_path):
    assert say_nothing(["0", "1", "2"]) and say_nothing(["#1", "2.5"]) and not say_nothing(["0", "sport"]) and not say_nothing(["été"])
    numbered = tmp_path / "numbered"
    numbered.mkdir()
    for split in ("train", "test"):
        frame = pd.read_json(toy_folder / f"{split}.jsonl", lines=True)
        frame["label"] = frame["label"].map({"food": 0, "sport": 1, "weather": 2})
        frame.to_json(numbered / f"{split}.jsonl", orient="records", lines=True)
    prototype = {**fast_options, "ft": {**fast_options["ft"], "head": "prototype", "epochs": 1}}
    notes = train(numbered, prototype, recipe="ft").data_notes
    assert any(
        "the class names hold no words ('0', '1', '2'), yet FT starts its prototypes from them" in note and "--label-descriptions" in note for note in notes
    )
    means = {**prototype, "ft": {**prototype["ft"], "prototype_init": "means"}}
    assert not any("hold no words" in note for note in train(numbered, means, recipe="ft").data_notes)
    # Labels that differ only in a number after a shared prefix say nothing either; the note shows what the encoder reads.
    prefixed = [f"intent_{i}" for i in range(5)]
    assert (
        say_nothing(label_texts(prefixed)) and _names_as_read(prefixed, label_texts(prefixed)) == "'intent_0' as '0', 'intent_1' as '1', 'intent_2' as '2', ..."
    )


def test_cli_names_a_missing_descriptions_file_before_training(toy_folder, tiny_model, tmp_path):
    result = CliRunner().invoke(
        app, ["train", str(toy_folder), "--model", tiny_model, "--label-descriptions", str(tmp_path / "nope.yaml"), "--output", str(tmp_path / "o")]
    )
    assert result.exit_code == 2, result.output
    assert "nope.yaml: no such file" in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_ft_plus_st_is_the_fine_tuning_that_validation_kept_then_self_training():
    from pathlib import Path

    from phasefit import RECIPES

    profile = Path(__file__).resolve().parents[1] / "benchmarks" / "profiles" / "held-out-plus.yaml"
    validated = yaml.safe_load(profile.read_text())["ft"]
    assert RECIPES["ft+st"].phases == ["ft", "st"]
    assert RECIPES["ft+st"].overrides() == {"ft": validated}
