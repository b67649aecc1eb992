"""The st phase: a clean pool, the pseudo-label choices, soft targets, weights and noise, and the kept student."""

import dataclasses
import json
import warnings

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from phasefit import train
from phasefit.config import FTConfig, STConfig, build_config
from phasefit.data import Split
from phasefit.errors import ConfigError
from phasefit.model import ClassificationHead, EncoderClassifier
from phasefit.phases.common import PhaseRun
from phasefit.phases.ft import FTData, PseudoRows, fit_classifier, training_dataset
from phasefit.phases.st import Pool, choose_pseudo_labels, clean_pool, pseudo_rows, teacher_probabilities, train_st
from phasefit.recipes import RECIPES, parse_recipe

FAST_FT = FTConfig(epochs=3, min_steps=0, batch_size=16, learning_rate=1e-3, head_size=16, patience=3)

PROBABILITIES = np.array(
    [
        [0.99, 0.01],  # 0: class 0, surest
        [0.95, 0.05],  # 1
        [0.60, 0.40],  # 2: class 0, unsure
        [0.02, 0.98],  # 3: class 1, surest
        [0.10, 0.90],  # 4
        [0.55, 0.45],  # 5: class 0, least sure
    ]
)


def test_the_pool_drops_copies_of_validation_test_and_labelled_texts_exactly_or_once_normalised():
    pool = clean_pool(
        ["A fine day.", "a  FINE day", "rain again", "the match", "Rain, again!", "new text", "new text"],
        labelled=["The match"],
        held_out=["a fine day", "nothing"],
    )
    assert pool.texts == ["rain again", "new text"]
    assert pool.stats() == {"offered": 7, "dropped_as_validation_or_test_copies": 2, "dropped_as_labelled_copies": 1, "texts": 2}


@pytest.mark.parametrize(
    ("selection", "per_class", "confidence", "rows"),
    [
        ("top_k", 1, 0.9, [0, 3]),
        ("top_k", 5, 0.92, [0, 1, 3]),
        ("balanced", 5, 0.9, [0, 1, 3, 4]),
        ("balanced", 5, 0.92, [0, 3]),  # class 1 has one row at 0.92, so class 0 is cut to one
        ("threshold", None, 0.9, [0, 1, 3, 4]),
        ("broad", 2, 0.9, [0, 3, 4, 5]),  # class 0: the surest and the least sure of its four, no threshold
        ("broad", None, 0.99, [0, 1, 2, 3, 4, 5]),
    ],
)
def test_each_selection_takes_the_rows_it_promises(selection, per_class, confidence, rows):
    config = STConfig(selection=selection, per_class=per_class, confidence=confidence)
    assert choose_pseudo_labels(PROBABILITIES, config).tolist() == rows


def test_hard_labels_are_one_hot_and_soft_labels_are_the_teachers_distribution():
    texts = [f"t{i}" for i in range(len(PROBABILITIES))]
    hard = pseudo_rows(PROBABILITIES, texts, STConfig(per_class=1, pseudo_weight=0.5, noise=0.2))
    assert hard.texts == ["t0", "t3"] and hard.targets.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert (hard.weight, hard.noise) == (0.5, 0.2)
    soft = pseudo_rows(PROBABILITIES, texts, STConfig(per_class=1, labels="soft"))
    assert np.allclose(soft.targets, PROBABILITIES[[0, 3]])


def test_one_hot_targets_of_weight_one_give_plain_cross_entropy_and_weights_scale_rows(tiny_model):
    encoder = SentenceTransformer(tiny_model, device="cpu")
    model = EncoderClassifier(encoder, ClassificationHead(32, 8, 3, 0.0)).eval()
    features = encoder.tokenize(["one text", "another one", "a third"])
    labels = torch.tensor([0, 2, 1])
    plain = model(labels=labels, **features)["loss"]
    targeted = model(labels=labels, targets=torch.eye(3)[labels], weights=torch.ones(3), **features)["loss"]
    assert torch.allclose(plain, targeted, atol=1e-6)
    per_row = torch.nn.functional.cross_entropy(model(**features)["logits"], labels, reduction="none")
    weighted = model(labels=labels, targets=torch.eye(3)[labels], weights=torch.tensor([1.0, 0.0, 0.0]), **features)["loss"]
    assert torch.allclose(weighted, per_row[0], atol=1e-6)


def test_noisy_pseudo_rows_change_at_every_read_and_labelled_rows_never(tiny_model):
    encoder = SentenceTransformer(tiny_model, device="cpu")
    long_text = "one two three four five six seven eight nine ten eleven twelve"
    rows = PseudoRows([long_text], np.array([[0.0, 1.0]], dtype=np.float32), weight=0.5, noise=0.5)
    data = FTData([long_text], np.array([0]), [], np.array([]), 2, pseudo=rows)
    dataset = training_dataset(encoder, data, seed=0)
    gold_reads = {tuple(dataset[0]["input_ids"]) for _ in range(5)}
    pseudo_reads = {tuple(dataset[1]["input_ids"]) for _ in range(5)}
    assert len(gold_reads) == 1 and len(pseudo_reads) > 1
    assert dataset[1]["weights"] == 0.5 and dataset[1]["targets"] == [0.0, 1.0] and dataset[1]["labels"] == 1
    assert "targets" not in training_dataset(encoder, FTData([long_text], np.array([0]), [], np.array([]), 2), seed=0).column_names


def teacher(tiny_model, toy, tmp_path):
    texts, labels = toy
    encoder = SentenceTransformer(tiny_model, device="cpu")
    data = FTData(texts[:12], labels[:12], texts[54:], labels[54:], 3)
    start = {name: tensor.clone() for name, tensor in encoder.state_dict().items()}
    head, stats = fit_classifier(encoder, data, FAST_FT, PhaseRun(0, tmp_path / "ft"))
    return encoder, head, stats, data, start


def test_a_student_is_kept_only_when_validation_improves_and_the_kept_model_is_in_place(tiny_model, toy, tmp_path):
    texts, labels = toy
    encoder, head, teacher_stats, data, start = teacher(tiny_model, toy, tmp_path)
    config = STConfig(rounds=2, per_class=6, confidence=0.0)
    pool = Pool(list(texts[12:54]), 42, 0, 0)
    encoder, head, stats = train_st(encoder, head, data, pool, FAST_FT, config, PhaseRun(0, tmp_path / "st"), teacher_stats, start)
    rounds = stats["rounds"]
    assert stats["teacher"]["best_validation_accuracy"] == teacher_stats["best_validation_accuracy"]
    assert 1 <= len(rounds) <= 2 and 0 < rounds[0]["pseudo_labels"] <= 18 and sum(rounds[0]["per_class"]) == rounds[0]["pseudo_labels"]
    assert all(entry["kept"] for entry in rounds[:-1]) and {"steps", "best_step", "best_validation_accuracy"} <= set(rounds[0])
    best = max([teacher_stats["best_validation_accuracy"], *[entry["best_validation_accuracy"] for entry in rounds]])
    assert stats["best_validation_accuracy"] == pytest.approx(best)
    embeddings = torch.as_tensor(encoder.encode(texts[54:]))
    accuracy = (head(embeddings).argmax(-1).numpy() == labels[54:]).mean()
    assert accuracy == pytest.approx(stats["best_validation_accuracy"])  # the weights in place are the kept model's
    empty = train_st(encoder, head, data, Pool([], 3, 3, 0), FAST_FT, config, PhaseRun(0, tmp_path / "none"), teacher_stats, start)[2]
    assert empty["why"] == "no unlabelled texts left in the pool" and empty["rounds"] == []


def test_a_resumed_phase_reads_the_teachers_labels_from_its_cache(tiny_model, toy, tmp_path):
    texts, _ = toy
    encoder, head, _, _, _ = teacher(tiny_model, toy, tmp_path)
    from phasefit.model import PhaseFitModel

    model = PhaseFitModel(encoder, head, ["0", "1", "2"])
    run = PhaseRun(0, tmp_path / "st", checkpoint_steps=10)
    first, labelling = teacher_probabilities(model, texts[12:54], run, 32)
    assert labelling["cached"] is False and labelling["texts_per_second"] > 0
    again, labelling = teacher_probabilities(model, texts[12:54], run, 32)
    assert labelling["cached"] is True and np.array_equal(first, again)
    _, labelling = teacher_probabilities(model, texts[12:40], run, 32)
    assert labelling["cached"] is False, "another pool is another key"


def test_ft_then_st_drops_held_out_copies_from_the_pool_and_keeps_both_phases_scores(toy_folder, fast_options, tmp_path):
    import pandas as pd

    train_rows = pd.read_json(toy_folder / "train.jsonl", lines=True)
    test_text = pd.read_json(toy_folder / "test.jsonl", lines=True)["text"].iloc[0]
    for ending in (" !", "!!", " ?", ".", " ..."):  # a test text, shouted, in train: some copies land in the pool
        train_rows.loc[len(train_rows)] = {"text": test_text.upper() + ending, "label": "sport"}
    train_rows.to_json(toy_folder / "train.jsonl", orient="records", lines=True)
    result = train(toy_folder, {**fast_options, "recipe": "ft+st", "samples_per_class": 4, "st": {"per_class": 4, "confidence": 0.0}})
    st = result.phase_stats["st"]
    assert st["pool"]["dropped_as_validation_or_test_copies"] >= 1 and st["pool"]["texts"] > 0
    assert st["teacher"]["best_validation_accuracy"] == result.phase_stats["ft"]["best_validation_accuracy"]
    assert st["rounds"] and st["rounds"][0]["pseudo_labels"] > 0
    assert json.loads(json.dumps(result.summary()))["phase_stats"]["st"]["pool"]["offered"] == st["pool"]["offered"]
    assert result.recipe.phases == ["ft", "st"]


def test_st_must_follow_ft_and_the_old_name_of_ft_plus_st_warns_once():
    with pytest.raises(ConfigError, match="must end with the one 'ft' phase .* optionally followed by 'st' phases"):
        parse_recipe({"name": "bad", "phases": ["st", "ft"]})
    assert parse_recipe({"name": "twice", "phases": ["ft", "st", "st"]}).phases == ["ft", "st", "st"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import phasefit.recipes

        phasefit.recipes._warned_aliases.clear()
        assert parse_recipe("3phase+") is RECIPES["ft+st"]
        assert parse_recipe("3phase+") is RECIPES["ft+st"]
    assert [str(w.message) for w in caught] == ["recipe '3phase+' is now called 'ft+st'; the old name will go."]


def test_an_old_self_training_option_names_where_it_went():
    with pytest.raises(ConfigError, match=r"ft.self_training_rounds has moved: it is now st.rounds"):
        build_config({"ft": {"self_training_rounds": 1}})
    with pytest.raises(ConfigError, match=r"st.selection must be one of top_k, balanced, threshold, broad"):
        build_config({"st": {"selection": "best"}})


def test_the_refit_decision_follows_the_option_and_the_count_of_labels(toy_folder, tmp_path):
    import pandas as pd

    from phasefit import load_data
    from phasefit.config import RunConfig
    from phasefit.data import with_validation_merged, without_validation_split
    from phasefit.pipeline import checkpoint_metric, refit_budget, refits_on_all_labels, validation_carved_from_few

    carved = load_data(toy_folder, seed=0)  # no validation file: a stratified 20 % of the 72 rows held out
    assert carved.validation_carved and refits_on_all_labels(RunConfig(refit_on_all_labels="auto"), carved)
    assert refits_on_all_labels(RunConfig(), carved), "on by default since its held-out study kept it"
    assert not refits_on_all_labels(RunConfig(refit_on_all_labels="never"), carved)
    drawn = load_data(toy_folder, seed=0, samples_per_class=5)  # validation comes from the rows the draw left out
    assert not drawn.validation_carved and not refits_on_all_labels(RunConfig(refit_on_all_labels="always"), drawn)
    pd.read_json(toy_folder / "test.jsonl", lines=True).to_json(toy_folder / "validation.jsonl", orient="records", lines=True)
    given = load_data(toy_folder, seed=0)
    assert not given.validation_carved and not refits_on_all_labels(RunConfig(refit_on_all_labels="always"), given)
    many = dataclasses.replace(carved, train=Split(carved.train.texts * 6, carved.train.labels * 6))  # over 100 rows a class
    assert not refits_on_all_labels(RunConfig(refit_on_all_labels="auto"), many) and refits_on_all_labels(RunConfig(refit_on_all_labels="always"), many)
    assert validation_carved_from_few(carved) and not any(validation_carved_from_few(data) for data in (drawn, given, many))
    assert [checkpoint_metric("auto", data) for data in (carved, drawn, given, many)] == ["loss", "accuracy", "accuracy", "accuracy"]
    assert checkpoint_metric("accuracy", carved) == "accuracy" and checkpoint_metric("macro_f1", carved) == "macro_f1", "a metric asked for is kept"

    user = without_validation_split(load_data(toy_folder, seed=0, samples_per_class=5), 0.2, seed=1)
    assert len(user.train) + len(user.validation) == 15 and user.validation_carved
    merged = with_validation_merged(user)
    assert len(merged.train) == 15 and len(merged.validation) == 0 and not merged.validation_carved

    stats = {
        "ft": {"best_step": 30, "chosen_learning_rate": 5e-5},
        "st": {"rounds": [{"kept": True, "best_step": 12}, {"kept": True, "best_step": 9}, {"kept": False, "best_step": 40}]},
    }
    config, round_steps = refit_budget(RunConfig(phases={**RunConfig().phases, "ft": FTConfig(learning_rate_grid=[1e-5, 5e-5])}), stats)
    assert (config.phases["ft"].fixed_steps, config.phases["ft"].learning_rate, config.phases["ft"].learning_rate_grid) == (30, 5e-5, [])
    assert round_steps == [12, 9]
    assert refit_budget(RunConfig(), {"ft": {"best_step": 0}})[1] is None


def test_without_a_validation_split_the_run_refits_on_every_labelled_row(toy_folder, fast_options):
    from phasefit import load_data
    from phasefit.data import without_validation_split

    user = without_validation_split(load_data(toy_folder, seed=0, samples_per_class=5), 0.2, seed=1)
    result = train(user, {**fast_options, "recipe": "ft+st", "refit_on_all_labels": "auto", "st": {"per_class": 4, "confidence": 0.0}})
    budget = result.phase_stats["budget_pass"]
    assert "best_validation_loss" in budget["ft"] and "best_validation_loss" in budget["st"], "3 carved rows a class choose by their loss"
    assert result.phase_stats["ft"]["steps"] == max(1, budget["ft"]["best_step"]) and result.phase_stats["ft"]["evaluations"] == 0
    kept = [entry for entry in budget["st"]["rounds"] if entry["kept"]]
    assert [entry["steps"] for entry in result.phase_stats["st"]["rounds"]] == [max(1, entry["best_step"]) for entry in kept]
    assert any(note.startswith("refit on all 15 labelled rows") for note in result.data_notes)
    assert result.validation_metrics["n_examples"] == len(user.validation)  # the chosen-on model's scores
    assert result.test_metrics["n_examples"] == 30


def test_a_fixed_budget_trains_exactly_its_steps_without_validation(tiny_model, toy, tmp_path):
    texts, labels = toy
    encoder = SentenceTransformer(tiny_model, device="cpu")
    config = FTConfig(**{**FAST_FT.__dict__, "fixed_steps": 7})
    head, stats = fit_classifier(encoder, FTData(texts, labels, [], np.array([], dtype=np.int64), 3), config, PhaseRun(0, tmp_path / "fixed"))
    assert stats["steps"] == 7 and stats["best_step"] == 7 and stats["evaluations"] == 0


def test_the_consistency_term_is_zero_for_an_unchanged_copy_and_grows_when_the_copy_differs(tiny_model):
    encoder = SentenceTransformer(tiny_model, device="cpu")
    for module in encoder.modules():  # training mode (the term is a training loss) without dropout's randomness
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    for config in (module.config for module in encoder.modules() if hasattr(module, "config") and hasattr(module.config, "attention_probs_dropout_prob")):
        config.attention_probs_dropout_prob = config.hidden_dropout_prob = 0.0
    torch.manual_seed(0)
    head = ClassificationHead(32, 8, 3, 0.0)
    features = encoder.tokenize(["one text", "another one"])
    labels = torch.tensor([0, 2])
    plain = EncoderClassifier(encoder, head).train()
    with_term = EncoderClassifier(encoder, head, consistency_weight=2.0).train()

    def extra(prefix: str, texts: list[str]) -> dict[str, torch.Tensor]:
        return {f"{prefix}{key}": value for key, value in encoder.tokenize(texts).items() if isinstance(value, torch.Tensor)}

    base = plain(labels=labels, **features)["loss"]
    same = with_term(labels=labels, **features, **extra("consistency_", ["pool text", "more pool"]), **extra("noised_", ["pool text", "more pool"]))["loss"]
    assert torch.allclose(base, same, atol=1e-6)
    differs = with_term(labels=labels, **features, **extra("consistency_", ["pool text", "more pool"]), **extra("noised_", ["weather", "sport"]))["loss"]
    assert differs > base
    assert torch.allclose(plain(labels=labels, **features, **extra("consistency_", ["x"]), **extra("noised_", ["y"]))["loss"], base, atol=1e-6)


def test_consistency_rows_are_padded_apart_and_a_student_trains_with_the_term(tiny_model, toy, tmp_path):
    from phasefit.phases.ft import ConsistencyTexts, PaddingByGroup

    texts, labels = toy
    encoder = SentenceTransformer(tiny_model, device="cpu")
    data = FTData(
        texts[:6], labels[:6], texts[60:], labels[60:], 3, consistency=ConsistencyTexts(["a long unlabelled text of many words here", "short"], 1.0, 0.5)
    )
    dataset = training_dataset(encoder, data, seed=0)
    batch = PaddingByGroup(encoder.tokenizer)([dataset[i] for i in range(4)])
    assert batch["input_ids"].shape[0] == batch["consistency_input_ids"].shape[0] == batch["noised_input_ids"].shape[0] == 4
    assert "targets" not in batch and batch["labels"].tolist() == labels[:4].tolist()
    encoder, head, teacher_stats, data, start = teacher(tiny_model, toy, tmp_path)
    config = STConfig(per_class=6, confidence=0.0, consistency_weight=0.5)
    _, _, stats = train_st(encoder, head, data, Pool(list(texts[12:54]), 42, 0, 0), FAST_FT, config, PhaseRun(0, tmp_path / "st"), teacher_stats, start)
    assert stats["rounds"][0]["steps"] > 0
