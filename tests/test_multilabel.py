"""Multi-label building blocks: label sets read and checked, the per-label draw, the metrics, Jaccard pairs."""

import json
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
    assert split.label_sets == [("joy", "love"), (), ("anger",)] and split.label_names == ["anger", "joy", "love"]
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
    assert not is_label_list_column(pd.DataFrame({"labels": []}), "labels", "x"), "a header without rows is left to the usual message"


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


def test_samples_f1_counts_a_row_with_no_label_answered_with_none_as_right():
    truth = np.array([[0, 0], [1, 0], [0, 0], [0, 1]])
    assert multilabel_metrics(truth, truth, ["a", "b"])["samples_f1"] == 1.0
    # rows: empty/empty 1, right 1, a label where none applies 0, a label missed 0
    predicted = np.array([[0, 0], [1, 0], [1, 0], [0, 0]])
    assert multilabel_metrics(truth, predicted, ["a", "b"])["samples_f1"] == pytest.approx(0.5)


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


def multi_label_toy():
    from conftest import toy_rows

    rows = toy_rows({"sport": 24, "weather": 24, "food": 24}, seed=5)
    names = ["food", "sport", "weather"]
    indicator = np.zeros((len(rows), 3), dtype=np.float32)
    for index, row in enumerate(rows):
        indicator[index, names.index(row["label"])] = 1
        if index % 4 == 0:  # every fourth text also carries the next label
            indicator[index, (names.index(row["label"]) + 1) % 3] = 1
    return [row["text"] for row in rows], indicator, names


def test_a_multi_label_row_trains_on_binary_cross_entropy(tiny_model):
    import torch
    from sentence_transformers import SentenceTransformer

    from phasefit.model import ClassificationHead, EncoderClassifier

    encoder = SentenceTransformer(tiny_model, device="cpu")
    model = EncoderClassifier(encoder, ClassificationHead(32, 8, 3, 0.0)).eval()
    features = encoder.tokenize(["one text", "another one"])
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    output = model(labels=targets, **features)
    assert torch.allclose(output["loss"], torch.nn.functional.binary_cross_entropy_with_logits(output["logits"], targets))


def test_thresholds_are_chosen_on_the_grid_for_all_labels_or_for_each():
    from phasefit.phases.ft import choose_thresholds

    truth = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    probabilities = np.array([[0.7, 0.2], [0.72, 0.33], [0.3, 0.36], [0.1, 0.31]])
    # label 0 is separated from 0.35 to 0.70 (the lowest wins); label 1's best F1 (0.8) starts at 0.25
    assert choose_thresholds(probabilities, truth, per_label=True) == [0.35, 0.25]
    shared = choose_thresholds(probabilities, truth, per_label=False)
    assert shared == [0.35, 0.35]  # micro-F1 over both labels peaks there (6/7), above 0.25 and 0.30 (0.8)


def test_a_multi_label_model_cuts_each_label_at_its_own_threshold_by_default():
    """Issue 48's threshold study made per_label the default (global stays an option)."""
    import torch

    from phasefit.config import FTConfig
    from phasefit.phases.ft import FTData, label_thresholds

    truth = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    logits = torch.logit(torch.tensor([[0.7, 0.2], [0.72, 0.33], [0.3, 0.36], [0.1, 0.31]]))
    texts = ["a", "b", "c", "d"]

    class FixedEncoder:  # the validation texts' logits, as if a head had produced them
        def encode(self, sentences, **_):
            return logits[[texts.index(text) for text in sentences]]

    data = FTData(texts, truth, texts, truth, 2)
    assert label_thresholds(FixedEncoder(), torch.nn.Identity(), data, FTConfig())["thresholds"] == pytest.approx([0.35, 0.25])
    assert label_thresholds(FixedEncoder(), torch.nn.Identity(), data, FTConfig(threshold="global"))["thresholds"] == pytest.approx([0.35, 0.35])


def test_thresholds_reach_below_a_twentieth_for_a_label_whose_probabilities_stay_near_its_base_rate():
    from phasefit.phases.ft import choose_thresholds

    truth = np.array([[1], [1], [0], [0], [0], [0]])
    probabilities = np.array([[0.03], [0.025], [0.004], [0.006], [0.002], [0.001]])  # ranked right, all under 0.05
    (cut,) = choose_thresholds(probabilities, truth, per_label=True)
    assert 0.006 < cut <= 0.025


def test_the_two_fold_comparison_scores_each_threshold_scheme_on_rows_it_did_not_choose_on():
    from phasefit.phases.ft import threshold_schemes_two_fold

    rng = np.random.default_rng(0)
    truth = (rng.random((40, 2)) < 0.5).astype(int)
    # label 0 separates between 0.6 and 0.8, label 1 between 0.1 and 0.3: no single cut serves both
    probabilities = np.where(truth == 1, [0.8, 0.3], [0.6, 0.1])
    comparison = threshold_schemes_two_fold(probabilities, truth)
    assert comparison["per_label"] == {"micro_f1": 1.0, "macro_f1": 1.0}
    assert comparison["global"]["macro_f1"] < 0.9 and comparison == threshold_schemes_two_fold(probabilities, truth)


def test_multi_label_fine_tuning_chooses_thresholds_and_the_model_predicts_label_lists(tiny_model, tmp_path):
    from sentence_transformers import SentenceTransformer

    from phasefit.config import FTConfig
    from phasefit.model import PhaseFitModel
    from phasefit.phases.common import PhaseRun
    from phasefit.phases.ft import FTData, train_ft

    texts, indicator, names = multi_label_toy()
    encoder = SentenceTransformer(tiny_model, device="cpu")
    config = FTConfig(epochs=10, min_steps=0, batch_size=16, learning_rate=1e-3, head_size=16, patience=3, metric="micro_f1", threshold="per_label")
    head, stats = train_ft(encoder, FTData(texts[:54], indicator[:54], texts[54:], indicator[54:], 3), config, PhaseRun(0, tmp_path / "ft"))
    assert "best_validation_micro_f1" in stats and len(stats["thresholds"]) == 3
    assert all(0.001 <= t <= 0.95 for t in stats["thresholds"]) and 0 <= stats["validation_at_thresholds"]["micro_f1"] <= 1
    # checkpoints are picked at the thresholds they would get, so the kept one scores there what it scored when picked
    assert stats["validation_at_thresholds"]["micro_f1"] == pytest.approx(stats["best_validation_micro_f1"], abs=0.02)
    assert "threshold_schemes_two_fold" not in stats  # 18 validation rows: too few to halve
    model = PhaseFitModel(encoder, head, names, {"multi_label": True, "thresholds": stats["thresholds"]})
    probabilities = model.predict_proba(texts[54:])
    assert probabilities.shape == (18, 3) and not np.allclose(probabilities.sum(axis=1), 1.0)  # independent sigmoids
    predicted = model.predict(texts[54:])
    assert all(isinstance(labels, list) and set(labels) <= set(names) for labels in predicted)
    assert predicted == [[name for name, p, t in zip(names, row, stats["thresholds"]) if p >= t] for row in probabilities]
    model.save_pretrained(tmp_path / "saved")
    again = PhaseFitModel.from_pretrained(tmp_path / "saved")
    assert again.multi_label and again.predict(texts[54:]) == predicted
    with pytest.raises(Exception, match="ft.head_refit 'logistic' refits a single-label head"):
        train_ft(encoder, FTData(texts[:54], indicator[:54], texts[54:], indicator[54:], 3), FTConfig(head_refit="logistic"), PhaseRun(0, tmp_path / "p"))


def test_a_multi_label_prototype_head_has_a_cut_per_label_between_its_rows_and_the_rest(tiny_model, tmp_path):
    import torch
    from sentence_transformers import SentenceTransformer

    from phasefit.config import FTConfig
    from phasefit.model import PhaseFitModel, PrototypeHead
    from phasefit.phases.common import PhaseRun
    from phasefit.phases.ft import FTData, label_offsets, new_head, train_ft

    similarity = torch.tensor([[0.9, 0.1], [0.7, 0.2], [0.1, 0.6], [0.3, 0.0]])
    members = [torch.tensor([True, True, False, False]), torch.tensor([False, False, False, False])]
    assert torch.allclose(label_offsets(similarity, members), torch.tensor([0.5, 0.225]))  # (0.8 + 0.2) / 2; no rows: the mean

    texts, indicator, names = multi_label_toy()
    encoder = SentenceTransformer(tiny_model, device="cpu")
    data = FTData(texts[:54], indicator[:54], texts[54:], indicator[54:], 3, class_texts=names)
    config = FTConfig(head="prototype", prototype_init="names+means", epochs=5, min_steps=0, batch_size=16, learning_rate=1e-3, patience=2, metric="micro_f1")
    head = new_head(encoder, data, config, seed=0)
    assert isinstance(head, PrototypeHead) and head.offsets is not None and head.config()["offsets"] is True
    with torch.no_grad():
        logits = head(encoder.encode(texts[:54], convert_to_tensor=True))
    carried = torch.as_tensor(indicator[:54]) > 0
    assert (logits[carried].mean() > logits[~carried].mean()).item()  # before any step, a label's own rows score higher
    head, stats = train_ft(encoder, data, config, PhaseRun(0, tmp_path / "ft"))
    model = PhaseFitModel(encoder, head, names, {"multi_label": True, "thresholds": stats["thresholds"]})
    model.save_pretrained(tmp_path / "saved")
    again = PhaseFitModel.from_pretrained(tmp_path / "saved")
    assert again.head.offsets is not None and torch.equal(again.head.offsets, head.offsets)
    assert np.allclose(again.predict_proba(texts[54:]), model.predict_proba(texts[54:]), atol=1e-6)


def test_the_prior_head_bias_starts_an_mlp_head_at_the_labels_base_rates(tiny_model):
    import torch
    from sentence_transformers import SentenceTransformer

    from phasefit.config import FTConfig, build_config
    from phasefit.errors import ConfigError
    from phasefit.phases.ft import FTData, new_head

    texts, indicator, names = multi_label_toy()
    indicator = indicator.copy()
    indicator[:, 2] = 0
    indicator[:4, 2] = 1  # a rare label: 4 of 54 rows
    encoder = SentenceTransformer(tiny_model, device="cpu")
    embeddings = encoder.encode(texts[:54], convert_to_tensor=True)
    smoothed = (indicator[:54].sum(axis=0) + 1) / (54 + 2)
    multi = FTData(texts[:54], indicator[:54], texts[54:], indicator[54:], 3, class_texts=names)
    single = FTData(texts[:54], np.array([0] * 36 + [1] * 18), texts[54:], np.array([0, 1] * 3), 2)

    def mean_output(data: FTData, head_bias: str) -> np.ndarray:
        head = new_head(encoder, data, FTConfig(head_bias=head_bias), seed=0).eval()
        with torch.no_grad():
            logits = head(embeddings)
        return (torch.sigmoid(logits) if data.multi_label else torch.softmax(logits, dim=-1)).mean(dim=0).numpy()

    assert FTConfig().head_bias == "prior"  # the default since issue 48's head-bias study
    assert np.allclose(mean_output(multi, "prior"), smoothed, atol=0.02)
    assert np.allclose(mean_output(single, "prior"), [37 / 56, 19 / 56], atol=0.02)
    assert abs(mean_output(multi, "random")[2] - smoothed[2]) > 0.3  # a random bias starts the rare label near 0.5
    with pytest.raises(ConfigError, match="head_bias"):
        build_config({"ft": {"head_bias": "zero"}})


def test_the_imbalance_correction_works_per_label_and_leaves_rows_without_labels_alone():
    from phasefit.pairs import correct_label_set_imbalance, upsampling_factors

    # label 0 on 40 rows, label 1 on 2 rows (one of them also label 0), 3 rows carry nothing
    indicator = np.zeros((44, 2), dtype=np.float32)
    indicator[:40, 0] = 1
    indicator[39:41, 1] = 1
    texts = [f"the text number {i} is about something" for i in range(44)]
    factor = upsampling_factors(np.array([40, 2]), 1.5, 4.0)[1]
    assert factor > 1
    new_texts, new_indicator = correct_label_set_imbalance(texts, indicator, 1.5, 4.0, np.random.default_rng(0))
    assert new_texts[:44] == texts and np.array_equal(new_indicator[:44], indicator)
    assert len(new_texts) == 44 + 2 * (factor - 1)  # rows 39 and 40, which carry the rare label, and nothing else
    assert np.array_equal(new_indicator[44:], np.repeat(indicator[39:41], factor - 1, axis=0))
    assert correct_label_set_imbalance(texts[:3], np.eye(3, dtype=np.float32), 1.5, 4.0, np.random.default_rng(0))[0] == texts[:3]


def multi_label_folder(tmp_path):
    texts, indicator, names = multi_label_toy()
    folder = tmp_path / "tags"
    folder.mkdir()
    rows = [{"text": text, "labels": [name for name, on in zip(names, row) if on]} for text, row in zip(texts, indicator)]
    rows[5]["labels"] = []  # a row no label applies to
    pd.DataFrame(rows[:60]).to_json(folder / "train.jsonl", orient="records", lines=True)
    pd.DataFrame(rows[60:]).to_json(folder / "test.jsonl", orient="records", lines=True)
    return folder, names


def test_a_folder_of_label_lists_loads_as_multi_label_with_a_draw_per_label(tmp_path):
    from phasefit import load_data

    folder, names = multi_label_folder(tmp_path)
    data = load_data(folder, seed=0, samples_per_class=3)
    assert data.multi_label and data.classes == names and not data.validation_carved  # carved before the draw, from rows it left out
    assert all(count >= 3 for count in label_counts(data.train.label_sets).values()) and data.unlabelled_texts
    assert data.ft_targets(data.train).shape == (len(data.train), 3) and data.ft_targets(data.test).sum() > 0
    assert any("rows per label" in note for note in data.notes) and any("multi-label: label lists in column 'labels'" in note for note in data.notes)
    training_file = sorted(set(pd.read_json(folder / "train.jsonl", lines=True)["text"]))
    assert data.dae_corpus(None, 0) == training_file == load_data(folder, seed=5, samples_per_class=2).dae_corpus(None, 0)
    frame = pd.read_json(folder / "test.jsonl", lines=True)
    frame.loc[2, "labels"] = ["food", "cooking"]
    frame.to_json(folder / "test.jsonl", orient="records", lines=True)
    with pytest.raises(DataError, match=r"test.jsonl \[test\]: row 3 carries label 'cooking', which no training row has"):
        load_data(folder, seed=0)
    dropped = load_data(folder, seed=0, unseen_test_labels="drop")
    assert dropped.test.label_sets[2] == ("food",) and any("removed labels unseen in train" in note for note in dropped.notes)


def test_a_multi_label_recipe_trains_scores_saves_and_predicts_label_lists(tmp_path, fast_options):
    from phasefit import PhaseFitModel, train

    folder, names = multi_label_folder(tmp_path)
    result = train(folder, fast_options, recipe="cl+ft")
    assert result.model.multi_label and result.config.phases["ft"].metric == "micro_f1"
    assert {"micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss", "per_label"} <= set(result.test_metrics)
    assert result.phase_stats["cl"]["pairs"] > 0 and len(result.phase_stats["ft"]["thresholds"]) == 3
    result.save(tmp_path / "model")
    saved = sorted(path.name for path in (tmp_path / "model").iterdir())
    assert "confusion_matrix.png" not in saved and "micro-F1" in (tmp_path / "model" / "README.md").read_text()
    model = PhaseFitModel.from_pretrained(tmp_path / "model")
    assert all(isinstance(labels, list) for labels in model.predict(["a goal in the match", "rain and wind"]))


def test_the_cli_trains_on_zero_one_columns_and_predicts_label_lists(tmp_path, tiny_model):
    from test_cli import fast_flags, runner

    from phasefit.cli import app

    texts, indicator, names = multi_label_toy()
    frame = pd.DataFrame({"text": texts, **{name: indicator[:, k].astype(int) for k, name in enumerate(names)}})
    frame.to_csv(tmp_path / "tags.csv", index=False)
    output = tmp_path / "model"
    result = runner.invoke(
        app, ["train", str(tmp_path / "tags.csv"), "--recipe", "ft", "--label-columns", ",".join(names), "--output", str(output), *fast_flags(tiny_model)]
    )
    assert result.exit_code == 0, result.output
    assert "micro_f1" in result.output
    (tmp_path / "texts.txt").write_text("a goal in the match\nrain and wind\n")
    predicted = runner.invoke(app, ["predict", str(output), str(tmp_path / "texts.txt"), "--output", str(tmp_path / "out.jsonl"), "--proba"])
    assert predicted.exit_code == 0, predicted.output
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert all(isinstance(row["labels"], list) and set(row["probabilities"]) == set(names) for row in rows)
    scored = runner.invoke(app, ["evaluate", str(output), str(tmp_path / "tags.csv"), "--json", str(tmp_path / "eval.json")])
    assert scored.exit_code == 0, scored.output
    metrics = json.loads((tmp_path / "eval.json").read_text())
    assert metrics["n_examples"] == len(texts) and set(metrics["per_label"]) == set(names)
    frame.loc[3, "weather"] = 7
    frame.to_csv(tmp_path / "tags.csv", index=False)
    bad = runner.invoke(
        app, ["train", str(tmp_path / "tags.csv"), "--label-columns", ",".join(names), "--output", str(tmp_path / "o2"), *fast_flags(tiny_model)]
    )
    assert bad.exit_code == 2 and "row 5, column 'weather': '7' is not 0 or 1" in " ".join(bad.output.split())


def test_the_estimator_takes_label_lists_or_an_indicator_matrix_and_answers_in_kind(tmp_path, fast_options):
    from phasefit import PhaseFitClassifier

    texts, indicator, names = multi_label_toy()
    options = {key: value for key, value in fast_options.items() if key != "seed"}
    by_matrix = PhaseFitClassifier(recipe="ft", seed=0, **options).fit(texts, indicator.astype(int))
    predicted = by_matrix.predict(texts[:5])
    assert predicted.shape == (5, 3) and set(np.unique(predicted)) <= {0, 1} and by_matrix.classes_.tolist() == [0, 1, 2]
    assert by_matrix.predict_proba(texts[:5]).shape == (5, 3)
    lists = [[name for name, on in zip(names, row) if on] for row in indicator]
    by_lists = PhaseFitClassifier(recipe="ft", seed=0, **options).fit(texts, lists)
    answers = by_lists.predict(texts[:5])
    assert isinstance(answers, list) and all(isinstance(row, list) and set(row) <= set(names) for row in answers)
    by_lists.save(tmp_path / "clf")
    assert PhaseFitClassifier.load(tmp_path / "clf").predict(texts[:5]) == answers


def test_a_multi_label_model_exports_to_onnx_and_serves_label_lists(tmp_path, tiny_model):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from sentence_transformers import SentenceTransformer

    from phasefit.deploy.export import OnnxClassifier, export_onnx
    from phasefit.deploy.serve import ServeOptions, create_app
    from phasefit.model import ClassificationHead, PhaseFitModel

    encoder = SentenceTransformer(tiny_model, device="cpu")
    model = PhaseFitModel(encoder, ClassificationHead(32, 8, 3, 0.0).eval(), ["food", "sport", "weather"], {"multi_label": True, "thresholds": [0.4, 0.5, 0.6]})
    model.save_pretrained(tmp_path / "model")
    texts = ["a goal in the match", "rain and wind today", "soup"]
    export_onnx(tmp_path / "model", tmp_path / "onnx")
    exported = OnnxClassifier(tmp_path / "onnx")
    assert exported.multi_label and exported.thresholds.tolist() == pytest.approx([0.4, 0.5, 0.6])
    assert np.allclose(exported.predict_proba(texts), model.predict_proba(texts), atol=1e-4)
    assert exported.predict(texts) == model.predict(texts)
    with TestClient(create_app(ServeOptions(str(tmp_path / "model")))) as client:
        answer = client.post("/predict", json={"texts": texts}).json()["predictions"]
    assert [row["labels"] for row in answer] == model.predict(texts) and all("label" not in row for row in answer)


def test_multi_label_pseudo_labels_are_chosen_per_label_by_each_labels_confidence():
    from phasefit.config import STConfig
    from phasefit.phases.st import choose_pseudo_labels, pseudo_rows

    probabilities = np.array([[0.97, 0.02], [0.95, 0.5], [0.99, 0.98], [0.03, 0.96], [0.01, 0.01], [0.92, 0.05]])
    thresholds = np.array([0.5, 0.4])
    # a label's confidence is its probability where the row is predicted to carry it; row 4 carries no label
    assert choose_pseudo_labels(probabilities, STConfig(selection="threshold", confidence=0.95), thresholds).tolist() == [0, 1, 2, 3]
    top = choose_pseudo_labels(probabilities, STConfig(selection="top_k", per_class=1, confidence=0.9), thresholds)
    assert top.tolist() == [2]  # the surest row of label 0 and of label 1 is the same row, taken once
    top2 = choose_pseudo_labels(probabilities, STConfig(selection="top_k", per_class=2, confidence=0.9), thresholds)
    assert top2.tolist() == [0, 2, 3]
    rows = pseudo_rows(probabilities, [f"t{i}" for i in range(6)], STConfig(selection="top_k", per_class=2, confidence=0.9), thresholds)
    assert rows.texts == ["t0", "t2", "t3"] and rows.targets.tolist() == [[1, 0], [1, 1], [0, 1]]
    soft = pseudo_rows(probabilities, [f"t{i}" for i in range(6)], STConfig(selection="top_k", per_class=2, confidence=0.9, labels="soft"), thresholds)
    assert np.allclose(soft.targets, probabilities[[0, 2, 3]])


def test_a_pseudo_labelled_multi_label_row_weighs_its_binary_cross_entropy(tiny_model):
    import torch
    from sentence_transformers import SentenceTransformer

    from phasefit.model import ClassificationHead, EncoderClassifier

    encoder = SentenceTransformer(tiny_model, device="cpu")
    model = EncoderClassifier(encoder, ClassificationHead(32, 8, 3, 0.0)).eval()
    features = encoder.tokenize(["one text", "another one"])
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.2, 0.9, 0.0]])
    output = model(labels=labels, weights=torch.tensor([1.0, 0.25]), **features)
    per_row = torch.nn.functional.binary_cross_entropy_with_logits(output["logits"], labels, reduction="none").mean(dim=-1)
    assert torch.allclose(output["loss"], (per_row[0] + 0.25 * per_row[1]) / 1.25)


def test_ft_then_st_self_trains_a_multi_label_model_with_noise_and_consistency(tmp_path, fast_options):
    from phasefit import PhaseFitModel, train

    folder, names = multi_label_folder(tmp_path)
    st_options = {"per_class": 4, "confidence": 0.0, "noise": 0.1, "consistency_weight": 0.5}
    options = {**fast_options, "recipe": "ft+st", "samples_per_class": 4, "validation_fraction": 0.4, "st": st_options}
    result = train(folder, options)
    st = result.phase_stats["st"]
    assert st["rounds"] and st["rounds"][0]["pseudo_labels"] > 0 and len(st["rounds"][0]["per_class"]) == 3
    assert len(st["thresholds"]) == 3 and "micro_f1" in st["validation_at_thresholds"]
    assert set(st["threshold_schemes_two_fold"]) == {"global", "per_label"}  # the final model's schemes, for issue 48's study
    assert np.allclose(result.model.thresholds, st["thresholds"])
    result.save(tmp_path / "model")
    model = PhaseFitModel.from_pretrained(tmp_path / "model")
    assert isinstance(model.head.offsets, __import__("torch").nn.Parameter)  # ft+st's prototype head, with a cut per label
    assert all(isinstance(labels, list) for labels in model.predict(["a goal in the match", "rain and wind"]))


def test_a_multi_label_contrastive_phase_is_cached_and_a_changed_label_set_misses(tmp_path, fast_options):
    from phasefit import train

    folder, names = multi_label_folder(tmp_path)
    options = {**fast_options, "cache_dir": str(tmp_path / "cache")}
    assert train(folder, options, recipe="cl+ft").cached_phases == []
    assert train(folder, options, recipe="cl+ft").cached_phases == ["cl"]
    frame = pd.read_json(folder / "train.jsonl", lines=True)
    frame.at[0, "labels"] = sorted(set(frame.at[0, "labels"]) ^ {"weather"})
    frame.to_json(folder / "train.jsonl", orient="records", lines=True)
    assert train(folder, options, recipe="cl+ft").cached_phases == []


def test_a_label_column_no_training_row_marks_is_a_warning_that_names_it(tmp_path, caplog):
    from phasefit import load_data

    texts, indicator, names = multi_label_toy()
    frame = pd.DataFrame({"text": texts, **{name: indicator[:, k].astype(int) for k, name in enumerate(names)}, "tech": 0})
    frame.to_csv(tmp_path / "tags.csv", index=False)
    with caplog.at_level("WARNING", logger="phasefit"):
        data = load_data(tmp_path / "tags.csv", seed=0, indicator_columns=[*names, "tech"])
    assert data.classes == names
    assert "tags.csv: label column(s) 'tech' have no training row marked 1; the model will not predict them" in caplog.text
    assert any(note.startswith("warning: ") and "'tech'" in note for note in data.notes)


def test_a_multi_label_refit_on_every_labelled_row_keeps_the_thresholds_chosen_on_the_held_out_ones(tmp_path, fast_options):
    from phasefit import train

    folder, names = multi_label_folder(tmp_path)
    result = train(folder, {**fast_options, "refit_on_all_labels": "auto", "ft": {**fast_options["ft"], "threshold": "per_label"}}, recipe="ft")
    chosen = result.phase_stats["budget_pass"]["ft"]["thresholds"]
    assert "budget_pass" in result.phase_stats and np.allclose(result.model.thresholds, chosen)
    assert result.phase_stats["ft"]["thresholds"] == [0.5] * 3  # the refit itself had no rows to choose on
