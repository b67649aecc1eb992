"""Phase budgets that scale down, the DAE decoder's own learning rate and warm-up, FT's learning-rate grid,
Joint's DAE stream over the pool, max_length from the pool, and every phase's curve in the run folder."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import toy_rows
from sentence_transformers import SentenceTransformer
from transformers import TrainerCallback

from phasefit import load_data, train
from phasefit.config import CLConfig, DAEConfig, FTConfig, JointConfig
from phasefit.errors import ConfigError
from phasefit.phases.cl import train_cl
from phasefit.phases.common import PhaseRun
from phasefit.phases.dae import train_dae
from phasefit.phases.ft import FTData, train_ft
from phasefit.phases.joint import train_joint
from phasefit.pipeline import CURVES_FILE, choose_max_length, token_lengths, truncation_shares
from phasefit.reporting.html import build_html_report


@pytest.fixture()
def toy():
    rows = toy_rows({"sport": 24, "weather": 24, "food": 24}, seed=5)
    names = sorted({r["label"] for r in rows})
    return [r["text"] for r in rows], np.array([[names.index(r["label"])] for r in rows])


class LearningRates(TrainerCallback):
    """Records every optimiser group's learning rate and whether the encoder's word embeddings moved, step by step."""

    def __init__(self, encoder: SentenceTransformer) -> None:
        self.encoder, self.rates, self.moved = encoder, [], []
        self.last = self.watched().detach().clone()

    def watched(self) -> torch.Tensor:
        return self.encoder.transformers_model.embeddings.word_embeddings.weight

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        self.rates.append([group["lr"] for group in optimizer.param_groups])
        self.moved.append(not torch.equal(self.last, self.watched()))
        self.last = self.watched().detach().clone()


def test_min_steps_lengthens_a_phase_on_small_data(tiny_model, toy, tmp_path):
    encoder = SentenceTransformer(tiny_model, device="cpu")
    _, short = train_cl(encoder, toy[0][:12], toy[1][:12], CLConfig(epochs=1, batch_size=16, pairs_per_example=1, min_steps=0), PhaseRun(0, tmp_path / "a"))
    encoder = SentenceTransformer(tiny_model, device="cpu")
    config = CLConfig(epochs=1, batch_size=16, pairs_per_example=1, min_steps=25)
    _, long = train_cl(encoder, toy[0][:12], toy[1][:12], config, PhaseRun(0, tmp_path / "b"))
    assert short["steps"] == int(np.ceil(short["pairs"] / 16)) < 25 == long["steps"]


def test_warmup_and_schedule_shape_the_learning_rate(tiny_model, toy, tmp_path):
    encoder = SentenceTransformer(tiny_model, device="cpu")
    watch = LearningRates(encoder)
    config = CLConfig(epochs=1, batch_size=8, learning_rate=1e-3, pairs_per_example=2, min_steps=20, warmup=0.25)
    train_cl(encoder, toy[0], toy[1], config, PhaseRun(0, tmp_path, [watch]))
    rates = [step[0] for step in watch.rates]
    assert rates[0] < rates[4] == pytest.approx(1e-3) and rates[-1] < rates[4] / 5  # 5 warm-up steps, then linear decay


def test_decoder_gets_its_own_learning_rate_and_trains_alone_during_its_warmup(tiny_model, toy, tmp_path):
    encoder = SentenceTransformer(tiny_model, device="cpu")
    watch = LearningRates(encoder)
    config = DAEConfig(
        epochs=1, batch_size=16, learning_rate=1e-4, decoder_learning_rate=1e-2, decoder_warmup_steps=4, min_steps=8, lr_scheduler="constant_with_warmup"
    )
    _, stats = train_dae(encoder, toy[0], config, PhaseRun(0, tmp_path, [watch]))
    assert stats["steps"] == 8
    assert sorted(set(watch.rates[-1])) == [pytest.approx(1e-4), pytest.approx(1e-2)]
    assert watch.moved == [False] * 4 + [True] * 4  # the tied encoder weights wait for the decoder's warm-up


def test_ft_learning_rate_grid_keeps_the_best_trial_on_validation(tiny_model, toy, tmp_path):
    texts, labels = toy
    encoder = SentenceTransformer(tiny_model, device="cpu")
    start = encoder.encode(texts[54:])
    config = FTConfig(epochs=6, min_steps=0, batch_size=16, head_size=16, patience=3, learning_rate_grid=[1e-7, 3e-3])
    head, stats = train_ft(encoder, FTData(texts[:54], labels[:54, -1], texts[54:], labels[54:, -1], 3), config, PhaseRun(0, tmp_path / "ft"))
    trials = {trial["learning_rate"]: trial["best_validation_accuracy"] for trial in stats["learning_rate_trials"]}
    assert set(trials) == {1e-7, 3e-3}
    assert stats["chosen_learning_rate"] == max(trials, key=lambda rate: (trials[rate], -rate))
    embeddings = torch.as_tensor(encoder.encode(texts[54:]))
    accuracy = (head(embeddings).argmax(-1).numpy() == labels[54:, -1]).mean()
    assert accuracy == pytest.approx(stats["best_validation_accuracy"])  # the weights are the chosen trial's
    assert not np.allclose(start, embeddings.numpy()) and not (tmp_path / "ft").exists()


def test_ft_grid_is_searched_for_every_recipe_alike(toy_folder, fast_options):
    options = {**fast_options, "ft": {**fast_options["ft"], "learning_rate_grid": [1e-4, 1e-3]}}
    for recipe in ("ft", "cl+ft"):
        stats = train(toy_folder, options, recipe=recipe).phase_stats["ft"]
        assert [trial["learning_rate"] for trial in stats["learning_rate_trials"]] == [1e-4, 1e-3]


def test_joint_dae_stream_reads_the_whole_pool(tiny_model, toy, tmp_path):
    encoder = SentenceTransformer(tiny_model, device="cpu")
    pool = [f"{text} today" for text in toy[0]] * 3
    config = JointConfig(epochs=1, batch_size=16, pairs_per_example=1, learning_rate=1e-3, min_steps=0)
    _, stats = train_joint(encoder, toy[0][:9], toy[1][:9], pool, config, PhaseRun(0, tmp_path))
    assert stats["rows"] == len(pool) > stats["pairs"]
    assert stats["steps"] == int(np.ceil(len(pool) / 16))


def test_max_length_follows_the_pool_and_a_too_large_request_is_refused(tiny_model):
    encoder = SentenceTransformer(tiny_model, device="cpu")
    short = token_lengths(encoder, ["a b"] * 99)
    long = token_lengths(encoder, ["a b c d e f g h i j k l m n o p q r s t u v w x y z"])
    assert long.tolist() == [28]  # 26 letters + [CLS] + [SEP], untruncated
    assert choose_max_length(encoder, short, None) == 16
    assert choose_max_length(encoder, np.concatenate([short, long, long]), None, percentile=99) == 28
    assert choose_max_length(encoder, short, 100) == 100  # beyond max_seq_length (64), within the 128 positions
    with pytest.raises(ConfigError, match="max_length 100000.*128"):
        choose_max_length(encoder, short, 100000)
    assert truncation_shares({"train": np.concatenate([short, long]), "test": np.zeros(0)}, 16) == {"train": 0.01}


def test_run_reports_truncation_per_split_and_writes_every_curve(tmp_path, fast_options):
    rows = toy_rows({"sport": 30, "weather": 30}, seed=3)
    test = [{"text": " ".join(["team"] * 40), "label": "sport"}] + rows[:10]
    data = load_data({"train": pd.DataFrame(rows[10:]), "test": pd.DataFrame(test)}, samples_per_class=8, seed=0)
    result = train(data, fast_options, recipe="3phase")
    assert result.truncation["test"] == pytest.approx(1 / 11, abs=1e-3) and result.truncation["train"] == 0
    folder = result.save(tmp_path / "run")
    records = [json.loads(line) for line in (folder / CURVES_FILE).read_text().splitlines()]
    assert {r["phase"] for r in records} == {"dae", "cl", "ft"}
    assert {"train_loss", "eval_accuracy"} <= {r["series"] for r in records if r["phase"] == "ft"}
    assert json.loads((folder / "metrics.json").read_text())["truncated_share"]["test"] > 0
    (folder / "learning_curves.png").unlink()
    assert "Learning curves per phase" in build_html_report(folder)  # drawn from curves.jsonl


def test_the_dae_stops_once_its_windowed_loss_stops_falling_and_not_before(tiny_model, toy, tmp_path):
    from types import SimpleNamespace

    from phasefit.phases.common import StopOnLossPlateau

    def feed(callback, losses):
        control = SimpleNamespace(should_training_stop=False)
        for step, loss in enumerate(losses, start=1):
            callback.on_log(None, SimpleNamespace(global_step=step), control, logs={"loss": loss})
            if control.should_training_stop:
                return step
        return None

    falling = [10.0 - 0.05 * step for step in range(300)]
    assert feed(StopOnLossPlateau(100, window=50), falling) is None  # falls by more than 1 % every window
    flat = falling[:100] + [falling[99]] * 300  # flat from step 101: the window ending at 150 is the last to improve
    assert feed(StopOnLossPlateau(100, window=50), flat) == 250
    assert feed(StopOnLossPlateau(100, min_steps=350, window=50), flat) == 350
    noisy = [5.0 + (0.5 if step % 2 else -0.5) for step in range(400)]  # no trend, noise above 1 % per step
    assert feed(StopOnLossPlateau(100, window=50), noisy) == 150

    texts = toy[0] * 10
    encoder = SentenceTransformer(tiny_model, device="cpu")
    _, stats = train_dae(encoder, texts, DAEConfig(epochs=20, batch_size=8, min_steps=0, learning_rate=1e-6, plateau_steps=50), PhaseRun(0, tmp_path / "d"))
    assert stats["stopped_on_plateau_at"] is not None and stats["steps"] == stats["stopped_on_plateau_at"] < 20 * 90
    with pytest.raises(ConfigError, match="plateau_steps"):
        from phasefit.config import build_config

        build_config({"dae": {"plateau_steps": 10}})
