"""The experiment runner and report generator on a tiny model (the benchmark itself is not a test)."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from conftest import toy_rows

from benchmarks import report, run
from benchmarks.paths import HERE as BENCHMARKS


def test_runner_records_resumes_and_the_report_is_built(tmp_path, tiny_model, capsys):
    root = tmp_path / "data"
    (root / "toy").mkdir(parents=True)
    pd.DataFrame(toy_rows({"sport": 20, "weather": 20, "food": 20}, seed=1)).to_json(root / "toy" / "train.jsonl", orient="records", lines=True)
    pd.DataFrame(toy_rows({"sport": 5, "weather": 5, "food": 5}, seed=2)).to_json(root / "toy" / "test.jsonl", orient="records", lines=True)
    results = tmp_path / "results" / "runs.jsonl"
    args = [
        "--datasets",
        "toy",
        "--regimes",
        "8",
        "--methods",
        "3phase",
        "dae+ft",
        "tuned-ft",
        "setfit",
        "--seeds",
        "1",
        "2",
        "--model",
        tiny_model,
        "--profile",
        "smoke",
        "--data-root",
        str(root),
        "--results",
        str(results),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    run.main(args)
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(records) == 8
    for record in records:
        assert {"dataset", "regime", "method", "model", "seed", "config", "git_commit", "test", "wall_seconds", "peak_rss_mb", "phase_seconds"} <= set(record)
        assert record["n_train"] == 24 and record["test"]["n_examples"] == 15 and record["test_split"] == "test"
        assert record["config"]["model"] == record["model"] == Path(tiny_model).name, "a record names the model, not this machine's path to it"
        assert record["method"] == "setfit" or record["config"]["cache_dir"] == "cache", "the cache folder is named, not its absolute path"
    dae_then_ft = next(r for r in records if r["method"] == "dae+ft" and r["seed"] == 1)
    assert dae_then_ft["cached_phases"] == ["dae"], "the DAE of 3phase is reused"
    assert dae_then_ft["phase_stats"]["dae"] == {"cached": True} and dae_then_ft["phase_stats"]["ft"]["steps"] >= 1
    tuned = next(r for r in records if r["method"] == "tuned-ft")
    assert tuned["chosen_learning_rate"] in run.TUNED_FT_LEARNING_RATES and len(tuned["grid"]) == 3
    assert all(0 < trial["ft_stats"]["best_step"] <= trial["ft_stats"]["steps"] for trial in tuned["grid"])
    assert all(len(trial["ft_stats"]["curve"]["train_loss"]) <= run.CURVE_POINTS for trial in tuned["grid"])

    capsys.readouterr()
    run.main(args)
    assert capsys.readouterr().out.count("skip (done)") == 8
    assert len(results.read_text().splitlines()) == 8

    text = report.build_report(report.read_records(results.parent), BENCHMARKS.parent.parent / "shared" / "METHOD.md", tmp_path / "accuracy.png")
    assert "| toy | 8 |" in text and "± " in text and "(2)" in text
    assert "3phase" in text and "tuned-ft" in text and (tmp_path / "accuracy.png").is_file()
    assert "Run by run (same dataset, regime and seed) over all cells: 3phase ahead in " in text and "; seed by seed ahead " in text
    assert "| toy | 8 | " in text.split("## What each phase did")[1].split("## Coverage")[0], "3phase's phase statistics are tabulated"
    cost = text.split("## Cost")[1]
    assert "| dataset | regime | 3phase | tuned-ft | setfit | dae+ft |" in cost and re.search(r"\| toy \| 8 \| [0-9.]+ \(2\) \|", cost)
    assert "- toy, 8: 3phase " in text and "dae+ft. The ablation that moves accuracy most: dae+ft." in text
    assert "Superseded" not in text
    assert "- Superseded: 3 older records" in report.build_report(
        report.read_records(results.parent), tmp_path / "none.md", None, superseded=report.read_records(results.parent)[:3]
    )


def test_report_pairs_runs_by_seed_and_calls_a_tie_within_the_seed_spread():
    assert report.paired_counts({1: 80.0, 2: 70.0, 3: 75.0, 4: 90.0}, {1: 79.0, 2: 71.0, 3: 75.0, 5: 10.0}) == (1, 1, 3)
    assert report.verdict([80.0, 82.0], [79.0, 81.0]) == "ties"
    assert report.verdict([80.0, 81.0], [75.0, 76.0]) == "beats"
    assert report.verdict([80.0], [75.0, 76.0]) is None


def test_report_says_when_an_imbalance_ablation_changed_nothing():
    seeded = {
        ("sst2", "64", "3phase"): {1: 77.0, 2: 78.5, 3: 76.0},
        ("sst2", "64", "no-imb"): {1: 77.0, 2: 78.5, 3: 76.0},
        ("sst2", "64", "dae+ft"): {1: 77.0, 2: 78.0, 3: 76.0},
        ("atis", "64", "3phase"): {1: 96.0, 2: 97.0},
        ("atis", "64", "no-imb"): {1: 96.0, 2: 96.5},
    }
    lines = report.plain_words(seeded, [("atis", "64"), ("sst2", "64")])
    unchanged = [line for line in lines if "equal 3phase on every seed" in line]
    assert unchanged == [f"- sst2, 64: no-imb equal 3phase on every seed{report.IMBALANCE_NO_OP}."]
    records = [
        {"dataset": "atis", "regime": "64", "method": "no-imb", "phase_stats": {"cl": {"pairs": 2396}}},
        {"dataset": "atis", "regime": "64", "method": "extra-imb", "phase_stats": {"cl": {"pairs": 6032}, "dae": {"cached": True}}},
        {"dataset": "atis", "regime": "64", "method": "3phase", "phase_stats": {"cl": {"cached": True}}},
    ]
    pairs = report.contrastive_pairs(records)
    assert pairs == {("atis", "64", "no-imb"): 2396, ("atis", "64", "extra-imb"): 6032}
    counted = [line for line in report.plain_words(seeded, [("atis", "64")], pairs) if "pairs the contrastive phase" in line]
    assert len(counted) == 1 and counted[0].endswith("extra-imb 6,032, no-imb 2,396.")
    assert not report.same_on_every_seed({}, {1: 77.0})
    assert not report.same_on_every_seed({1: 77.0, 4: 70.0}, {1: 77.0})


def test_report_projects_the_cost_of_a_missing_full_data_run_from_measured_step_rates():
    config = {
        "dae": {"epochs": 1, "max_texts": 2000},
        "cl": {"epochs": 3, "pairs_per_example": 4.0},
        "ft": {"min_steps": 200, "patience": 5},
    }
    three_phase = {
        "dataset": "snips",
        "regime": "64",
        "method": "3phase",
        "n_train": 448,
        "n_unlabelled": 12552,
        "config": config,
        "phase_seconds": {"dae": 126.0, "cl": 360.0, "ft": 720.0},
        "phase_stats": {
            "dae": {"steps": 63, "effective_batch_size": 32},
            "cl": {"steps": 180, "effective_batch_size": 32},
            "ft": {"steps": 360, "effective_batch_size": 32},
        },
    }
    tuned = {"dataset": "snips", "regime": "64", "method": "tuned-ft", "config": {"learning_rate_grid": [2e-5, 5e-5, 1e-4]}}
    snips, sst5 = report.full_regime_lines([three_phase, tuned])
    # 13,000 texts: CL 3 x ceil(52,000 / 32) = 4,875 steps at 2 s; FT 6 epochs x 407 = 2,442 steps at 2 s; DAE 63 steps at 2 s.
    assert snips.startswith("- snips/full: no record. The whole training split holds 13,000 texts;")
    assert "63 DAE steps" in snips and "4,875 CL steps" in snips and "at least 2,442 FT steps" in snips
    assert "about 4.1 h (2.7 h of it CL)" in snips and "FT 3 times, about 4.1 h" in snips
    assert sst5 == "- sst5/full: no record, and too few measured phases to project its cost."
    full_runs = [{**tuned, "regime": "full", "wall_seconds": hours * 3600} for hours in (1.0, 2.0, 4.0)]
    fast_full_3phase = {**three_phase, "regime": "full", "wall_seconds": 3 * 3600, "phase_seconds": {"dae": 6.3, "cl": 18.0, "ft": 36.0}}
    partly_clocked = {**fast_full_3phase, "sitting_commits": ["3aaf2d7", "4e91b2b"], "phase_seconds": {"dae": 1.0, "cl": 1.0, "ft": 1.0}}
    everything = [three_phase, tuned, *full_runs, fast_full_3phase, partly_clocked, {**full_runs[0], "dataset": "sst5"}]
    snips_after, sst5_after = report.full_regime_lines(everything)
    # The full runs' own step rates do not move the projection (it stays the one from the 8/64 runs); they are set beside it.
    # A run begun before the runner clocked phases across sittings is left out of the measured rates.
    assert snips_after == snips.replace("no record.", "recorded 3phase 2 run(s), median 3.0 h; tuned-ft 3 run(s), median 2.0 h.") + (
        " The 1 full 3phase run(s) with every sitting's phase time recorded measured 0.10 (CL) / 0.10 (FT) s a step (median)."
    )
    assert sst5_after == "- sst5/full: recorded tuned-ft 1 run(s), median 1.0 h, and too few measured phases to project its cost."


def test_speed_is_composed_from_computed_phases_when_every_3phase_run_used_the_cache():
    def run(method, wall, **phases):
        return {
            "dataset": "sst2",
            "regime": "64",
            "method": method,
            "wall_seconds": wall,
            "cached_phases": ["dae", "cl"] if method == "3phase" else [],
            "phase_seconds": {name: seconds for name, (seconds, _) in phases.items()},
            "phase_stats": {name: ({"steps": 10} if computed else {"cached": True}) for name, (_, computed) in phases.items()},
        }

    three_phase = [run("3phase", 320.0, dae=(0.0, False), cl=(0.0, False), ft=(300.0, True))]
    others = [run("dae+ft", 500.0, dae=(150.0, True), ft=(100.0, True)), run("cl+ft", 400.0, cl=(70.0, True), ft=(100.0, True))]
    lines = report.speed_lines(three_phase + others)
    assert lines[0] == "- all runs: median wall time 320 s = 5.3 min over 1 run(s): under the 15-minute target."
    # FT comes from the 3phase run itself (300 s), DAE and CL from the ablations; 20 s overhead: 150 + 70 + 300 + 20.
    assert "(dae 150 s over 1, cl 70 s over 1, ft 300 s over 1) plus 20 s of loading and evaluation: 540 s = 9.0 min, under" in lines[1]
    assert report.speed_lines(three_phase)[1].startswith("- No run computed every phase")


def test_report_counts_tuned_ft_picks_at_the_ends_of_its_grid():
    grid = {"learning_rate_grid": [2e-5, 5e-5, 1e-4]}
    records = [{"method": "tuned-ft", "chosen_learning_rate": rate, "config": grid} for rate in (1e-4, 1e-4, 5e-5, 2e-5)]
    [line] = report.grid_edge_lines(records + [{"method": "ft", "config": {}}])
    assert line.startswith("- Tuned FT picked the largest learning rate of its grid in 2 of 4 runs and the smallest in 1 ")
    assert report.grid_edge_lines([{"method": "ft", "config": {}}]) == []


def test_report_measures_how_much_choosing_on_validation_lifted_validation_over_test():
    def record(method, dataset, validation, test):
        return {"method": method, "dataset": dataset, "regime": "8", "validation_accuracy": validation, "test": {"accuracy": test}}

    records = [record("setfit", "a", 0.80, 0.80), record("setfit", "b", 0.70, 0.68), record("3phase+", "a", 0.85, 0.80), record("3phase+", "b", 0.71, 0.70)]
    first, second = report.selection_optimism_lines(records + [record("ft", "a", 0.9, 0.1)])
    assert first.startswith("- Validation minus test accuracy, mean over runs (points): 3phase+ +3.00 (2 runs), setfit +1.00 (2 runs).")
    assert second == "- 3phase+'s excess over setfit's gap is largest on a/8 (+5.00) and b/8 (-1.00)."
    assert report.selection_optimism_lines([record("3phase+", "a", 0.85, 0.80)]) == []


def fake_sweep(tmp_path, monkeypatch, meanwhile=lambda key: None) -> tuple[list[int], list[str]]:
    """run.main's loop over a toy plan (seeds 1 and 2) with run_one faked; returns the seeds started and the arguments.
    ``meanwhile(key)`` runs inside each fake run, as another worker would act while this one trains."""
    started: list[int] = []

    def fake_run(dataset, regime, method, seed, model, profile, data_root, cache_dir, work_dir=None):
        started.append(seed)
        meanwhile((dataset, regime, method, seed, profile))
        return {
            "dataset": dataset,
            "regime": regime,
            "method": method,
            "model": "m",
            "seed": seed,
            "profile": profile,
            "test": {"accuracy": 0.5, "macro_f1": 0.5},
            "wall_seconds": 1.0,
        }

    monkeypatch.setattr(run, "run_one", fake_run)
    monkeypatch.setattr(run, "model_label", lambda model: "m")
    (tmp_path / "toy").mkdir(exist_ok=True)
    (tmp_path / "toy" / "train.jsonl").write_text('{"text": "a", "label": "x"}\n')
    args = [
        "--datasets",
        "toy",
        "--regimes",
        "8",
        "--methods",
        "ft",
        "--seeds",
        "1",
        "2",
        "--model",
        "m",
        "--results",
        str(tmp_path / "runs.jsonl"),
        "--data-root",
        str(tmp_path),
    ]
    return started, args


def test_runner_skips_a_run_that_another_worker_finished_while_it_was_busy(tmp_path, monkeypatch, capsys):
    results = tmp_path / "runs.jsonl"

    def another_worker_finishes_seed_2(key):
        dataset, regime, method, _, profile = key
        run.append_record(results, {"dataset": dataset, "regime": regime, "method": method, "model": "m", "seed": 2, "profile": profile, "test": {}})

    started, args = fake_sweep(tmp_path, monkeypatch, another_worker_finishes_seed_2)
    run.main(args)
    assert started == [1]
    assert "skip (done): ('toy', '8', 'ft', 'm', 2, 'cpu')" in capsys.readouterr().out


def test_a_run_that_another_worker_is_training_is_left_to_it_and_its_claim_dies_with_it(tmp_path, monkeypatch, capsys):
    results = tmp_path / "runs.jsonl"
    started, args = fake_sweep(tmp_path, monkeypatch)
    with run.run_claim(results, ("toy", "8", "ft", "m", 2, "cpu")):
        run.main(args)
    assert started == [1]
    assert "skip (running in another worker): ('toy', '8', 'ft', 'm', 2, 'cpu')" in capsys.readouterr().out
    run.main(args)  # the claim is free again (as when its worker dies): the run is trained now, the finished one skipped
    assert started == [1, 2] and len(results.read_text().splitlines()) == 2
    claims = list((tmp_path / ".claims").iterdir())
    assert claims and all(claim.read_text() == "" for claim in claims), "claims are released (emptied) once their runs are written"


def toy_tuned_ft_sweep(tmp_path, tiny_model, regime: str, methods: list[str], train_per_class: int):
    """A runner command on a toy dataset, its results file and cache, and the work folder its tuned-ft run uses."""
    root = tmp_path / "data"
    (root / "toy").mkdir(parents=True)
    pd.DataFrame(toy_rows({"sport": train_per_class, "weather": train_per_class}, seed=1)).to_json(root / "toy" / "train.jsonl", orient="records", lines=True)
    pd.DataFrame(toy_rows({"sport": 4, "weather": 4}, seed=2)).to_json(root / "toy" / "test.jsonl", orient="records", lines=True)
    # A validation file, as every benchmark dataset has: without one the few rows carved out of train would send tuned-ft
    # through the library's grid (run_tuned_ft_on_carved_rows), not the trials these tests stop and resume.
    pd.DataFrame(toy_rows({"sport": 4, "weather": 4}, seed=3)).to_json(root / "toy" / "validation.jsonl", orient="records", lines=True)
    results, cache = tmp_path / "runs.jsonl", tmp_path / "cache"
    args = [
        "--datasets",
        "toy",
        "--regimes",
        regime,
        "--methods",
        *methods,
        "--seeds",
        "1",
        "--model",
        tiny_model,
        "--profile",
        "smoke",
        "--data-root",
        str(root),
        "--results",
        str(results),
        "--cache-dir",
        str(cache),
    ]
    work = run.run_work_dir(str(cache), ("toy", regime, "tuned-ft", run.model_label(tiny_model), 1, "smoke"))
    return args, results, cache, work


def train_stopped_at_the_second_call(real_train, work_dirs: list):
    def train(*args, **kwargs):
        work_dirs.append(kwargs["work_dir"])
        if len(work_dirs) == 2:
            raise KeyboardInterrupt
        return real_train(*args, **kwargs)

    return train


def test_a_full_data_run_stopped_midway_continues_from_its_work_folder(tmp_path, tiny_model, monkeypatch):
    import phasefit

    args, results, cache, work = toy_tuned_ft_sweep(tmp_path, tiny_model, "full", ["tuned-ft", "3phase"], train_per_class=12)
    real_train, work_dirs = phasefit.train, []
    monkeypatch.setattr(phasefit, "train", train_stopped_at_the_second_call(real_train, work_dirs))
    monkeypatch.setattr(run, "git_commit", lambda: "first")
    with pytest.raises(KeyboardInterrupt):
        run.main(args)
    assert not results.exists()
    assert [json.loads(line)["learning_rate"] for line in (work / "trials.jsonl").read_text().splitlines()] == [run.TUNED_FT_LEARNING_RATES[0]]
    first_sitting = json.loads((work / "elapsed.json").read_text())
    assert first_sitting["seconds"] > 0 and first_sitting["sittings"] == 1 and first_sitting["commits"] == ["first"]

    with (work / "trials.jsonl").open("a") as trials:
        trials.write('{"learning_rate": 5e-05, "validation_acc')  # a line cut by the crash: that trial is redone
    work_dirs.clear()
    checkout = {"commit": "second"}

    def train_while_the_checkout_moves_on(*args, **kwargs):
        work_dirs.append(kwargs["work_dir"])
        result = real_train(*args, **kwargs)
        checkout["commit"] += "+"
        return result

    monkeypatch.setattr(phasefit, "train", train_while_the_checkout_moves_on)
    monkeypatch.setattr(run, "git_commit", lambda: checkout["commit"])
    run.main(args)
    tuned, three_phase = [json.loads(line) for line in results.read_text().splitlines()]
    # The finished learning rate is not trained again; each run trains in its own work folder.
    assert work_dirs[:2] == [work / "lr-5e-05", work / "lr-0.0001"] and work_dirs[2].name == work.name.replace("tuned-ft", "3phase")
    assert [trial["learning_rate"] for trial in tuned["grid"]] == list(run.TUNED_FT_LEARNING_RATES)
    assert tuned["sittings"] == 2 and tuned["wall_seconds"] >= first_sitting["seconds"]
    # A record names the commit its run started from (not the one checked out when it ended), and each sitting's.
    assert tuned["git_commit"] == "second" and tuned["sitting_commits"] == ["first", "second"]
    assert three_phase["git_commit"] == "second++" and "sittings" not in three_phase
    assert not any((cache / "runs").iterdir()), "a recorded run's work folder is removed"
    # 8/64 runs take minutes and restart instead.
    assert run.run_work_dir(str(cache), ("toy", "64", "3phase", "m", 1, "cpu")) is None


def test_a_tuned_ft_run_in_the_8_regime_keeps_its_finished_learning_rates_when_stopped(tmp_path, tiny_model, monkeypatch):
    import phasefit

    args, results, cache, work = toy_tuned_ft_sweep(tmp_path, tiny_model, "8", ["tuned-ft"], train_per_class=16)
    real_train, work_dirs = phasefit.train, []
    monkeypatch.setattr(phasefit, "train", train_stopped_at_the_second_call(real_train, work_dirs))
    with pytest.raises(KeyboardInterrupt):
        run.main(args)
    assert [json.loads(line)["learning_rate"] for line in (work / "trials.jsonl").read_text().splitlines()] == [run.TUNED_FT_LEARNING_RATES[0]]
    trained_again = []
    monkeypatch.setattr(phasefit, "train", lambda *a, **kw: trained_again.append(kw["work_dir"]) or real_train(*a, **kw))
    run.main(args)
    (record,) = [json.loads(line) for line in results.read_text().splitlines()]
    assert [trial["learning_rate"] for trial in record["grid"]] == list(run.TUNED_FT_LEARNING_RATES)
    # Only the unfinished learning rates are trained again, and no trial writes checkpoints in this regime.
    assert len(trained_again) == len(run.TUNED_FT_LEARNING_RATES) - 1 and work_dirs == [None, None] and trained_again == [None, None]
    assert record["sittings"] == 2 and not work.exists()
    # Other methods in the 8/64 regimes take minutes and simply restart.
    assert run.run_work_dir(str(cache), ("toy", "8", "3phase+", "m", 1, "cpu")) is None


def test_the_run_clock_adds_each_phases_seconds_across_sittings(tmp_path, monkeypatch):
    now = {"t": 0.0}
    monkeypatch.setattr(run.time, "perf_counter", lambda: now["t"])
    first = run.RunClock(tmp_path, "a")
    dae = first.callback("1/2 DAE")
    now["t"] += 10
    dae.on_train_end(None, None, None)
    fine_tuning = first.callback("2/2 FT")
    now["t"] += 5
    fine_tuning.on_save(None, None, None)
    trial = first.callback("1/1 FT", "lr-2e-05")
    now["t"] += 2
    trial.on_save(None, None, None)
    now["t"] += 3  # work after the last checkpoint is lost with the sitting, so it is not counted

    second = run.RunClock(tmp_path, "b")
    assert second.sittings == 2 and second.earlier_seconds == 17
    assert second.across_sittings({"dae": 0.5, "ft": 7.0}) == {"dae": 10.5, "ft": 12.0}
    assert second.across_sittings({"ft": 1.0}, "lr-2e-05") == {"ft": 3.0}
    assert second.across_sittings({"ft": 1.0}, "lr-5e-05") == {"ft": 1.0}


def test_component_rule_keeps_only_a_gain_of_half_a_point_ahead_in_half_the_paired_runs():
    base, name = "ft (val-proto)", "ft (val-proto-self)"
    kept = {("snips", "8", base): {1: 90.0, 2: 91.0}, ("snips", "8", name): {1: 91.0, 2: 91.0, 3: 99.0}}
    line = report.component_decisions(kept)[0]
    assert "over 2 paired run(s) mean difference +0.50 points, ahead in 1: **kept**" in line
    small = {("snips", "8", base): {1: 90.0, 2: 91.0}, ("snips", "8", name): {1: 90.9, 2: 91.0}}
    assert "**dropped**" in report.component_decisions(small)[0]
    one_big_win = {("snips", "8", base): {1: 90.0, 2: 91.0, 3: 92.0}, ("snips", "8", name): {1: 95.0, 2: 90.0, 3: 91.0}}
    assert "ahead in 1: **dropped**" in report.component_decisions(one_big_win)[0]


def test_side_by_side_table_gives_each_method_its_median_and_ratio_to_setfit():
    from benchmarks import speed

    rows = [
        {"dataset": "sst2", "regime": "8", "seed": 1, "method": method, "wall_seconds": seconds}
        for method, seconds in (("setfit", 100.0), ("setfit", 120.0), ("setfit", 500.0), ("3phase+", 230.0), ("3phase+", 250.0))
    ]
    lines = speed.side_by_side_lines(rows)
    assert "| sst2 | 8 | 1 | – | 3phase+ | 2 | 240 | 2.00 |" in lines
    assert "| sst2 | 8 | 1 | – | setfit | 3 | 120 | 1.00 |" in lines
    lines = speed.side_by_side_lines([*rows, {"dataset": "sst2", "regime": "8", "seed": 1, "method": "setfit", "wall_seconds": 20.0, "torch_threads": 2}])
    assert "| sst2 | 8 | 1 | – | setfit | 3 | 120 | 1.00 |" in lines and "| sst2 | 8 | 1 | 2 | setfit | 1 | 20 | 1.00 |" in lines


def test_the_bar_counts_wins_over_the_better_peer_and_sign_tests_each_peer():
    seeded = {}
    for number, dataset in enumerate(["a", "b", "c", "d", "e"]):
        for regime, seeds in (("8", range(1, 6)), ("64", range(1, 4))):
            seeded[(dataset, regime, "tuned-ft")] = {s: 70.0 + s * 0.1 for s in seeds}
            seeded[(dataset, regime, "setfit")] = {s: 71.0 + s * 0.1 for s in seeds}
            seeded[(dataset, regime, "3phase+")] = {s: 75.0 + s * 0.1 for s in seeds}
    keys = report.in_table_order({(d, r) for d, r, _ in seeded})
    lines = report.bar_lines(seeded, keys)
    assert "beats the better peer in 10, ties in 0, loses in 0" in lines[0]
    assert "**met**" in lines[3] and "better peer (setfit)" in lines[4]
    del seeded[("b", "8", "setfit")]
    lines = report.bar_lines(seeded, keys)
    assert "beats the better peer in 9," in lines[0] and "- b, 8: no verdict yet (setfit not run)." in lines
    seeded[("b", "8", "setfit")] = {s: 71.0 + s * 0.1 for s in range(1, 6)}
    seeded[("a", "8", "3phase+")] = {s: 60.0 for s in range(1, 6)}
    assert "**not met**" in report.bar_lines(seeded, keys)[3]
    del seeded[("e", "64", "3phase+")][3]
    assert "short of their seeds" in report.bar_lines(seeded, keys)[3] and "e/64" in report.bar_lines(seeded, keys)[3]
    assert "It can no longer be met: a/8 lost with all seeds in." in report.bar_lines(seeded, keys)[3]
    seeded[("a", "8", "3phase+")] = {s: 75.0 + s * 0.1 for s in range(1, 6)}
    assert "no longer" not in report.bar_lines(seeded, keys)[3]
    # Ties in six complete cells leave four wins at most, though two cells are still open.
    for dataset, regime in [("b", "8"), ("c", "8"), ("d", "8"), ("b", "64"), ("c", "64"), ("d", "64")]:
        seeded[(dataset, regime, "3phase+")] = dict(seeded[(dataset, regime, "setfit")])
    del seeded[("e", "8", "3phase+")]
    bar = report.bar_lines(seeded, keys)[3]
    assert "**not met**. It can no longer be met with these cells: at most 4 win(s), 2 in cells that have all their seeds and 2 open cell(s)." in bar


def test_the_papers_claim_needs_five_wins_over_ft_and_names_the_cells_not_run():
    seeded = {}
    for dataset in ["a", "b", "c", "d", "e"]:
        for regime in ("8", "64"):
            seeded[(dataset, regime, "ft")] = {s: 70.0 + s * 0.1 for s in (1, 2, 3)}
    for dataset in ["a", "b", "c", "d", "e"]:
        # Ahead by far more than the seed std in five cells, while behind on one seed of each: the sign test does not decide.
        seeded[(dataset, "8", "3phase")] = {1: 70.0, 2: 78.0, 3: 78.0}
    keys = report.in_table_order({(d, r) for d, r, _ in seeded})
    lines = report.bar_lines(seeded, keys, "3phase", ("ft",), report.CLAIM_SEEDS, sign_test_required=False)
    assert "3phase beats ft in 5, ties in 0, loses in 0" in lines[0] and "Run by run against ft: ahead in 10, behind in 5" in lines[1]
    assert "(at least 5 wins, no loss): **met**" in lines[2] and "p < 0.05" not in lines[2]
    assert "Cells with no 3phase run yet: a/64, b/64, c/64, d/64, e/64." in lines[2]
    assert "- a, 8: 3phase beats (+" in lines[3] and "ft." in lines[3]
    assert report.claim_plainly(seeded, keys) == [
        "- Plainly: 3phase beats ft beyond the seed spread in 5 of the 5 cell(s) judged so far and loses 0; the paper's claim shows with this model on our data."
    ]
    seeded[("a", "64", "3phase")] = {s: 60.0 for s in (1, 2, 3)}
    lines = report.bar_lines(seeded, keys, "3phase", ("ft",), report.CLAIM_SEEDS, sign_test_required=False)
    assert "loses in 1 (a/64)" in lines[0] and "**not met**" in lines[2]
    assert "in 5 of the 6 cell(s) judged so far and loses 1; the paper's claim does not show" in report.claim_plainly(seeded, keys)[0]


def test_the_claim_on_validation_pairs_3phase_under_the_chosen_budgets_with_ft():
    rows = [
        ("3phase", "val-budget", 1, 0.80),
        ("ft", "val-old", 1, 0.78),
        ("3phase", "val-budget", 2, 0.70),
        ("ft", "val-old", 2, 0.74),
        ("ft", "val-old", 3, 0.9),
    ]
    records = [{"dataset": "sst2", "regime": "8", "method": m, "profile": p, "seed": s, "validation_accuracy": v} for m, p, s, v in rows]
    assert report.claim_on_validation_lines(records) == [
        "- On validation (the study below: 3phase under the chosen budgets against ft, same FT): over 2 paired run(s) mean difference -1.00 points, ahead in 1, behind in 1."
    ]
    assert report.claim_on_validation_lines([]) == []


def test_which_recipe_averages_only_over_datasets_where_every_method_has_all_its_seeds(tmp_path):
    accuracy = {
        ("a", "8", "setfit"): [80.0] * 5,
        ("a", "8", "3phase+"): [84.0, 86.0] * 3,
        ("b", "8", "setfit"): [60.0] * 5,
        ("b", "8", "3phase+"): [50.0] * 5,
        ("c", "8", "setfit"): [99.0] * 5,
        ("d", "8", "setfit"): [10.0] * 5,
        ("d", "8", "3phase+"): [90.0] * 4,
    }
    keys = report.in_table_order({(d, r) for d, r, _ in accuracy})
    lines = report.which_recipe_lines(accuracy, keys)
    row = "| about 8 per class | `setfit` | setfit 70.00, 3phase+ 67.50 | a, b |"
    stand_in = " `3phase+` (ft+st's predecessor; `--recipe 3phase+` now runs ft+st): its records stand in at 8 until ft+st has all its seeds."
    assert lines[2:] == [row, "", "No test run yet in a row's regime: ft+st at 8, 3phase at 8, ft at 8, tuned-ft at 8." + stand_in]
    accuracy[("a", "8", "ft")] = [99.0] * 3  # too few seeds anywhere: left out of the row, which still stands
    assert report.which_recipe_lines(accuracy, keys)[2:] == [
        row,
        "",
        "Not in a row yet (fewer seeds than the row needs on every dataset): ft at 8. No test run yet in a row's regime: ft+st at 8, 3phase at 8, tuned-ft at 8."
        + stand_in,
    ]
    accuracy[("a", "8", "tuned-ft")] = [70.0] * 5
    accuracy[("b", "8", "tuned-ft")] = [70.0] * 5
    accuracy[("c", "8", "ft+st")] = [99.0] * 5  # all its seeds on one dataset only: it would narrow the row to none
    assert report.which_recipe_lines(accuracy, keys)[2] == "| about 8 per class | `tuned-ft` | tuned-ft 70.00, setfit 70.00, 3phase+ 67.50 | a, b |"
    assert "Not in a row yet (fewer seeds than the row needs on every dataset): ft+st at 8, ft at 8." in report.which_recipe_lines(accuracy, keys)[4]
    # Two methods with all their seeds on the same single dataset narrow the row together: both leave it.
    narrowed_twice = {**accuracy, ("c", "8", "3phase"): [99.0] * 5}
    assert report.which_recipe_lines(narrowed_twice, keys)[2] == "| about 8 per class | `tuned-ft` | tuned-ft 70.00, setfit 70.00, 3phase+ 67.50 | a, b |"
    assert (
        "Not in a row yet (fewer seeds than the row needs on every dataset): ft+st at 8, 3phase at 8, ft at 8."
        in report.which_recipe_lines(narrowed_twice, keys)[4]
    )
    # The report reads records alone (it does not import phasefit), so it keeps its own copy of the recipe aliases.
    from benchmarks.report.bar import SUCCESSORS
    from phasefit.recipes import ALIASES

    assert SUCCESSORS == {old: new for old, new in ALIASES.items() if old in report.WHICH_RECIPE_METHODS}
    # Once the successor has all its seeds wherever the predecessor has them, the predecessor leaves the row.
    succeeded = {**accuracy, ("a", "8", "ft+st"): [60.0] * 5, ("b", "8", "ft+st"): [60.0] * 5}
    lines = report.which_recipe_lines(succeeded, keys)
    assert lines[2] == "| about 8 per class | `setfit` | setfit 79.67, ft+st 73.00 | a, b, c |"
    assert lines[4].endswith("`3phase+` (ft+st's predecessor; `--recipe 3phase+` now runs ft+st): left the row at 8, where ft+st has them.")
    assert "3phase+ at 8" not in lines[4]
    for method in ("ft", "tuned-ft", "ft+st"):
        accuracy = {key: value for key, value in accuracy.items() if key[2] != method}
    readme = tmp_path / "README.md"
    start, end = report.WHICH_RECIPE_MARKERS
    readme.write_text(f"intro\n{start}\nold\n{end}\nrest\n")
    report.write_readme_block(readme, lines)
    assert readme.read_text() == "intro\n" + start + "\n" + "\n".join(lines) + "\n" + end + "\nrest\n"


def test_the_claim_in_its_own_regimes_is_paired_per_cell_holds_on_half_the_cells_and_judges_the_ablations_at_full(tmp_path):
    seeded = {}
    for dataset, regime in report.REGIME_CLAIM_CELLS:
        seeded[(dataset, regime, "ft")] = {1: 70.0, 2: 71.0, 3: 72.0}
    seeded[("sst2", "8", "3phase")] = {1: 72.0, 2: 73.1, 3: 73.9}  # +2 points on every draw: a paired win
    seeded[("snips", "8", "3phase")] = {1: 69.0, 2: 73.0, 3: 72.0}  # mixed: a tie
    lines = report.regime_claim_lines(seeded)
    assert lines[0] == "- Over 2 of the 9 cells judged: 3phase beats ft in 1 (sst2/8), ties in 1, loses in 0."
    assert lines[1].startswith("- The paper's claim (3phase wins at least half of the judged cells and loses none): **holds so far**.")
    assert "atis/8, sst2/64" in lines[1] and "sst2/8," not in lines[1]
    assert "cannot hold" not in lines[1]
    assert "- atis, full: no 3phase run yet." in lines and "- None run yet on atis/full, snips/full, sst5/full." in lines
    seeded[("atis", "full", "3phase")] = {1: 60.0, 2: 61.0, 3: 62.1}  # a paired loss at full data
    seeded[("atis", "full", "no-imb")] = {1: 61.0, 2: 62.0, 3: 63.0}
    lines = report.regime_claim_lines(seeded)
    assert "loses in 1 (atis/full)" in lines[0] and "**does not hold so far**" in lines[1]
    assert lines[1].endswith("It cannot hold whatever they show: 3phase already loses a cell with all its seeds.")
    tied = {key: value for key, value in seeded.items() if key[:2] != ("atis", "full")}
    for dataset, regime in report.REGIME_CLAIM_CELLS[1:5]:  # with sst2/8's win, 5 cells settled and 4 open
        tied[(dataset, regime, "3phase")] = {1: 71.0, 2: 70.0, 3: 72.5}
    assert "cannot hold" not in report.regime_claim_lines(tied)[1]  # 1 win + 4 open wins = 5 of 9
    tied[("sst2", "8", "3phase")] = {1: 71.0, 2: 70.0, 3: 72.5}
    assert report.regime_claim_lines(tied)[1].endswith("It cannot hold whatever they show: 3phase would win at most 4 of the 9 cells.")
    assert lines[-1].startswith("- atis, full: no-imb beats 3phase: mean paired difference +0.97 points over 3 seeds")
    expected = report.regime_expectation_lines(seeded)
    assert expected[0].startswith("- About 8 labelled texts per class: the paper's recipe (3phase) against plain fine-tuning")
    assert "wins (paired t-test p < 0.05) on sst2; ties on snips (mean difference +1.17 points over 6 runs); not judged yet on atis." in expected[0]
    assert expected[1] == "- About 64 per class (sst2, snips, atis): not measured yet."
    assert "loses (p < 0.05) on atis" in expected[2]
    readme = tmp_path / "README.md"
    start, end = report.PAPER_RECIPE_MARKERS
    readme.write_text(f"a\n{start}\n{end}\nb\n")
    report.write_readme_block(readme, expected, report.PAPER_RECIPE_MARKERS)
    assert readme.read_text() == "a\n" + start + "\n" + "\n".join(expected) + "\n" + end + "\nb\n"


def test_a_cheaper_budget_is_taken_when_it_costs_at_most_half_a_point():
    base, name = "ft (val-proto-supcon)", "ft (val-proto-supcon-short)"
    seeded = {("sst2", "8", base): {1: 70.0, 2: 72.0}, ("sst2", "8", name): {1: 70.0, 2: 71.2}}
    wall = {("sst2", "8", base): {1: 300.0, 2: 300.0}, ("sst2", "8", name): {1: 100.0, 2: 50.0}}
    line = report.cheaper_decisions(seeded, wall)[0]
    assert "mean difference -0.40 points, behind in 1; median wall time 0.25x the base's: **taken**" in line
    seeded[("sst2", "8", name)][1] = 69.0
    assert "**not taken**" in report.cheaper_decisions(seeded)[0]


def test_threads_options_refuse_counts_that_torch_would_choke_on(capsys):
    assert run.thread_count("1") == 1
    for bad in ("0", "-2", "two"):
        with pytest.raises(SystemExit):
            run.main(["--threads", bad])
        assert f"expected a positive whole number of threads, got '{bad}'" in capsys.readouterr().err


def test_the_runner_refuses_a_plan_with_a_typo_before_its_first_run(tmp_path, capsys):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "train.jsonl").write_text('{"text": "a", "label": "x"}\n')
    common = ["--data-root", str(tmp_path), "--results", str(tmp_path / "runs.jsonl")]
    with pytest.raises(SystemExit):
        run.main(["--datasets", "toy", "tyo", "--regimes", "8", "sixty", "--methods", "3phase++", "setfit", "--profile", "nope", *common])
    err = capsys.readouterr().err
    assert f"dataset 'tyo': no {tmp_path / 'tyo' / 'train.jsonl'}" in err and "dataset 'toy'" not in err
    assert "regime 'sixty': expected labelled examples per class" in err and "regime '8'" not in err
    assert "method '3phase++': expected one of 3phase, joint" in err and "method 'setfit'" not in err
    assert "profile 'nope': neither a YAML file nor a name under" in err
    assert not (tmp_path / "runs.jsonl").exists()
    assert run.plan_errors(["toy"], ["8", "64", "full"], ["3phase+", "ft+st", "tuned-ft"], tmp_path, "cpu") == []
    superseded = run.plan_errors(["toy"], ["8"], ["ft"], tmp_path, "held-out-plus-self")
    assert superseded == [
        "profile 'held-out-plus-self' is superseded: self-training is the st phase now; the same runs today: --methods ft+st --profile held-out-plus"
    ]


def toy_splits(root: Path) -> Path:
    """A two-class dataset folder ``toy`` under root with its own train (20 a class), validation (10) and test (5) files,
    each text prefixed by its split."""
    (root / "toy").mkdir(parents=True)
    for split, per_class, seed in (("train", 20, 1), ("validation", 10, 2), ("test", 5, 3)):
        rows = [
            {**row, "text": f"{split} {row['text']} {number}"} for number, row in enumerate(toy_rows({"sport": per_class, "weather": per_class}, seed=seed))
        ]
        pd.DataFrame(rows).to_json(root / "toy" / f"{split}.jsonl", orient="records", lines=True)
    return root


def test_a_held_out_profile_chooses_on_part_of_validation_and_is_scored_on_the_rest_never_on_test(tmp_path, capsys):
    root = toy_splits(tmp_path / "data")
    profile = {"held_out_validation": True, "max_validation_examples": 6}
    data = run.load_benchmark_data("toy", "8", 1, root, profile)
    chosen_on, scored_on = set(data.validation.texts), set(data.test.texts)
    assert len(chosen_on) == 6 and len(scored_on) == 14 and not chosen_on & scored_on
    assert all(text.startswith("validation ") for text in chosen_on | scored_on), "the test split is never scored"
    assert sorted(data.validation.classes).count("sport") == 3, "both parts are stratified"
    again = run.load_benchmark_data("toy", "8", 1, root, profile)
    assert again.validation.texts == data.validation.texts and again.test.texts == data.test.texts, "the cut is seeded: every method gets the same one"
    assert len(run.load_benchmark_data("toy", "8", 1, root, {"max_validation_examples": 6}).test) == 10

    profile_file = tmp_path / "held-out.yaml"
    profile_file.write_text("held_out_validation: true\n")
    with pytest.raises(SystemExit):
        run.main(["--datasets", "toy", "--regimes", "8", "--methods", "setfit", "--profile", str(profile_file), "--data-root", str(root)])
    assert "scores on held-out validation, not test: give its runs their own --results file" in capsys.readouterr().err
    assert run.plan_errors(["toy"], ["8"], ["setfit"], root, str(profile_file), tmp_path / "held_out.jsonl") == []


def held_out_record(method: str, profile: str, seed: int, held_out: float, chosen_on: float) -> dict:
    return {
        "dataset": "snips",
        "regime": "8",
        "method": method,
        "profile": profile,
        "seed": seed,
        "git_commit": "abc",
        "validation_accuracy": chosen_on,
        "test": {"accuracy": held_out},
        "test_split": run.HELD_OUT_SPLIT,
    }


def test_the_held_out_study_keeps_a_component_on_held_out_gains_and_counts_rejected_rounds_as_ties():
    records = [held_out_record("ft", "held-out-plus", seed, 0.90, 0.95) for seed in (1, 2, 3)]
    records += [
        held_out_record("ft", "held-out-plus-self", 1, 0.92, 0.97),
        held_out_record("ft", "held-out-plus-self", 2, 0.90, 0.95),
        held_out_record("ft", "held-out-plus-self", 3, 0.90, 0.95),
    ]
    records += [held_out_record("setfit", "held-out", seed, 0.91, 0.91) for seed in (1, 2, 3)]
    lines = report.held_out_lines(records)
    decision = next(line for line in lines if line.startswith("- Component ft (held-out-plus-self)"))
    assert "over 3 paired run(s) mean held-out difference +0.67 points, ahead in 1, behind in 0: **kept**" in decision
    assert "| snips | 8 | 90.00 ± 0.00 (3) | 90.67 ± 1.15 (3) | 91.00 ± 0.00 (3) |" in lines
    assert "- ft (held-out-plus) against setfit (held-out), run by run: ahead in 0, behind in 3 (two-sided sign test p = 0.250)." in lines
    assert any("ft (held-out-plus) +5.00 (3 runs)" in line and "setfit (held-out) +0.00 (3 runs)" in line for line in lines)
    worse = [r if r["profile"] != "held-out-plus-self" or r["seed"] != 2 else {**r, "test": {"accuracy": 0.89}} for r in records]
    assert "ahead in 1, behind in 1: **dropped**" in next(line for line in report.held_out_lines(worse) if line.startswith("- Component"))


def test_the_cost_bar_divides_median_wall_times_per_cell_and_names_the_cells_over_twice():
    def record(method, dataset, seconds):
        return {"method": method, "dataset": dataset, "regime": "8", "wall_seconds": seconds}

    records = [
        record("setfit", "a", 100.0),
        record("setfit", "a", 300.0),
        record("3phase+", "a", 500.0),
        record("3phase+", "a", 90.0),
        record("setfit", "b", 50.0),
        record("3phase+", "b", 75.0),
        record("3phase+", "c", 10.0),
        record("ft", "b", 1.0),
    ]
    [line] = report.cost_ratio_lines(records)
    assert line.startswith("- Wall time, 3phase+ over setfit (medians of the test records per cell): a/8 1.5x, b/8 1.5x. At most 2x in 2 of 2 cell(s).")
    records.append(record("3phase+", "b", 200.0))
    assert "b/8 2.8x. At most 2x in 1 of 2 cell(s); over it: b/8." in report.cost_ratio_lines(records)[0]
    assert report.cost_ratio_lines([record("setfit", "a", 1.0)]) == []


def test_the_paired_rule_wins_or_loses_a_cell_only_with_a_paired_t_test_below_005():
    steady = {1: 70.0, 2: 80.0, 3: 60.0, 4: 75.0, 5: 65.0}
    ahead = {seed: value + 1.0 + 0.1 * seed for seed, value in steady.items()}  # +1 on every draw: a win the seed spread hides
    assert report.paired_verdict(ahead, steady)[0] == "beats" and report.verdict(list(ahead.values()), list(steady.values())) == "ties"
    outcome, difference, p_value, shared = report.paired_verdict(steady, ahead)
    assert (outcome, shared) == ("loses", 5) and difference == pytest.approx(-1.3) and p_value < 0.05
    noisy = {1: 72.0, 2: 78.0, 3: 61.0, 4: 74.0, 5: 66.0}
    assert report.paired_verdict(noisy, steady)[0] == "ties"
    assert report.paired_verdict({1: 71.0, 2: 81.0}, {1: 70.0, 2: 80.0})[:2] == ("beats", 1.0)  # the same gain on each draw
    assert report.paired_verdict({1: 71.0}, {1: 70.0})[0] is None
    assert report.paired_verdict({1: 70.0, 2: 80.0, 9: 50.0}, {1: 70.0, 2: 80.0, 7: 90.0})[0] == "ties"  # only shared seeds count
    seeded, keys = {}, []
    for dataset in "abcde":
        for regime in ("8", "64"):
            keys.append((dataset, regime))
            seeded[(dataset, regime, "setfit")] = dict(steady)
            seeded[(dataset, regime, "tuned-ft")] = {seed: value - 5.0 for seed, value in steady.items()}
            seeded[(dataset, regime, "ft+st")] = dict(ahead if dataset in "abc" else noisy)
    lines = report.bar_lines(seeded, keys, "ft+st", paired=True)
    assert lines[0].startswith("- Over 10 cell(s)") and "beats the better peer in 6, ties in 4, loses in 0" in lines[0]
    assert "**met**" in lines[3]
    assert any(line.startswith("- a, 8: ft+st beats the better peer (setfit): mean paired difference +1.30 points over 5 seeds") for line in lines)


def test_the_gap_bar_reads_how_much_of_the_way_to_full_data_the_challenger_goes():
    seeded = {
        ("sst2", "8", "tuned-ft"): {1: 70.0, 2: 72.0},
        ("sst2", "full", "tuned-ft"): {1: 90.0},
        ("sst2", "8", "ft+st"): {1: 80.0, 2: 84.0},
        ("ag_news", "8", "tuned-ft"): {1: 80.0},
        ("ag_news", "8", "ft+st"): {1: 81.0},
    }
    sst2, ag_news = report.gap_closed_lines(seeded)
    assert (
        sst2
        == "- sst2: tuned FT at 8 per class 71.00, full-data FT 90.00 (1 seed(s)), ft+st at 8 per class 82.00: it closes 58% of the gap (bar: at least half): **met**."
    )
    assert ag_news == "- ag_news: not measured yet (no tuned-ft at full)."


def test_the_gap_bar_takes_a_capped_full_data_run_only_as_a_lower_bound():
    seeded = {
        ("sst2", "8", "tuned-ft"): {1: 70.0},
        ("sst2", "8", "ft+st"): {1: 74.0},
        ("ag_news", "8", "tuned-ft"): {1: 80.0},
        ("ag_news", "8", "ft+st"): {1: 86.0},
    }
    capped = {("sst2", "full", "tuned-ft"): {1: 90.0}, ("ag_news", "full", "tuned-ft"): {1: 88.0}}
    sst2, ag_news = report.gap_closed_lines(seeded, capped=capped)
    assert "full-data FT capped (profile full-capped, a lower bound) 90.00" in sst2 and "closes 20% of the gap" in sst2
    assert "**not met** (it holds against the uncapped reference" in sst2
    assert "closes 75% of the gap" in ag_news and "**met against the capped reference only**" in ag_news
    uncapped = {**seeded, ("sst2", "full", "tuned-ft"): {1: 78.0}}
    assert "full-data FT 78.00" in report.gap_closed_lines(uncapped, capped=capped)[0], "an uncapped run is the reference when there is one"


def test_a_study_with_a_plan_gets_no_verdict_before_all_its_paired_runs_are_in():
    records = [
        held_out_record("ft+st", profile, seed, 0.90 + 0.05 * (profile == "held-out-st-scale"), 0.9)
        for seed in (1, 2)
        for profile in ("held-out-plus", "held-out-st-scale")
    ]
    decision = next(line for line in report.held_out_lines(records) if line.startswith("- Component ft+st (held-out-st-scale)"))
    assert "2 of its 18 planned paired runs so far" in decision and "**no verdict yet**" in decision and "+5.00" in decision


def multi_label_dataset(root: Path) -> None:
    from test_multilabel import multi_label_toy

    texts, indicator, names = multi_label_toy()
    rows = [{"text": text, "labels": [name for name, on in zip(names, row) if on]} for text, row in zip(texts, indicator)]
    (root / "tags").mkdir(parents=True)
    pd.DataFrame(rows[:54]).to_json(root / "tags" / "train.jsonl", orient="records", lines=True)
    pd.DataFrame(rows[54:]).to_json(root / "tags" / "test.jsonl", orient="records", lines=True)


def test_the_runner_scores_a_multi_label_dataset_by_f1_for_phasefit_and_setfit_one_vs_rest(tmp_path, tiny_model):
    root = tmp_path / "data"
    multi_label_dataset(root)
    pd.DataFrame(toy_rows({"sport": 20, "weather": 20}, seed=1)).to_json((root / "toy.jsonl"), orient="records", lines=True)
    (root / "toy").mkdir()
    (root / "toy.jsonl").rename(root / "toy" / "train.jsonl")
    assert run.default_results(["tags"], root) == run.MULTI_LABEL_RESULTS and run.default_results(["toy"], root) == run.DEFAULT_RESULTS
    assert any("single-label ones in one plan" in e for e in run.plan_errors(["tags", "toy"], ["8"], ["ft"], root, "smoke", tmp_path / "r.jsonl"))
    assert any("their own --results file" in e for e in run.plan_errors(["tags"], ["8"], ["ft"], root, "smoke", run.DEFAULT_RESULTS))

    results = tmp_path / "results" / "multi_label" / "runs.jsonl"
    common = ["--datasets", "tags", "--regimes", "4", "--seeds", "1", "2", "--model", tiny_model, "--profile", "smoke", "--data-root", str(root)]
    run.main([*common, "--methods", "ft", "tuned-ft", "setfit", "--results", str(results), "--cache-dir", str(tmp_path / "cache")])
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert sorted((r["method"], r["seed"]) for r in records) == [(m, s) for m in ("ft", "setfit", "tuned-ft") for s in (1, 2)]
    for record in records:
        assert {"micro_f1", "macro_f1", "samples_f1", "per_label"} <= set(record["test"]) and "validation_accuracy" not in record
        assert 0 <= record["validation_macro_f1"] <= 1 and 0 <= record["validation_micro_f1"] <= 1
    setfit = next(r for r in records if r["method"] == "setfit")
    assert setfit["config"]["setfit"]["multi_target_strategy"] == "one-vs-rest" and len(set(setfit["config"]["thresholds"])) == 1
    assert {"micro_f1", "macro_f1"} <= set(setfit["test_at_default_threshold"])
    tuned = next(r for r in records if r["method"] == "tuned-ft")
    assert tuned["validation_micro_f1"] == max(trial["validation_micro_f1"] for trial in tuned["grid"])

    lines = report.multi_label_lines(records)
    assert lines[2].startswith("| dataset | regime | ft | tuned-ft | setfit |") and lines[4].startswith("| tags | 4 | ")
    assert any(line.startswith("- tags, 4: ft (chosen on validation) ") and "paired over 2 seeds" in line for line in lines)
    only_setfit = [r for r in records if r["method"] == "setfit"]
    assert "- tags, 4: no verdict yet (no phasefit recipe has run)." in report.multi_label_lines(only_setfit)
    assert "- tags, 4: no verdict yet (setfit has not run)." in report.multi_label_lines([r for r in records if r["method"] == "ft"])


def test_the_best_multi_label_recipe_is_chosen_on_validation_not_test():
    from benchmarks.report.multilabel import best_recipe

    validation = {("g", "8", "ft"): {1: 30.0, 2: 32.0}, ("g", "8", "3phase"): {1: 33.0, 2: 31.5}, ("g", "8", "ft+st"): {1: 20.0}}
    assert best_recipe(validation, "g", "8") == "3phase" and best_recipe(validation, "g", "64") is None


FAKE_FASTFIT = """
import json, os, sys
request = json.load(open(sys.argv[1]))
assert request["arguments"]["num_train_epochs"] == 40 and request["train"]["labels"] and "test" not in request["train"]
first = request["train"]["labels"][0]
answer = {"predictions": {split: [first] * len(texts) for split, texts in request["predict"].items()}, "seconds": 1.5, "versions": {"fast-fit": "fake"}}
if request.get("checkpoints"):
    os.makedirs(request["checkpoints"]["folder"], exist_ok=True)
    json.dump(request["checkpoints"], open(os.path.join(request["checkpoints"]["folder"], "asked.json"), "w"))
    print("a log line")
    print("fastfit-peer: checkpoint saved 3", flush=True)
    answer["resumed_from_step"] = 3
json.dump(answer, open(sys.argv[2], "w"))
"""


def test_the_fastfit_peer_runs_in_its_own_python_and_is_scored_like_every_method(tmp_path, tiny_model, monkeypatch):
    import sys

    root = tmp_path / "data"
    (root / "toy").mkdir(parents=True)
    pd.DataFrame(toy_rows({"sport": 12, "weather": 12}, seed=1)).to_json(root / "toy" / "train.jsonl", orient="records", lines=True)
    pd.DataFrame(toy_rows({"sport": 5, "weather": 5}, seed=2)).to_json(root / "toy" / "test.jsonl", orient="records", lines=True)
    monkeypatch.setenv("PHASEFIT_FASTFIT_PYTHON", str(tmp_path / "missing" / "python"))
    assert any("runs in its own environment" in e for e in run.plan_errors(["toy"], ["4"], ["fastfit"], root, "smoke", tmp_path / "r.jsonl"))
    script = tmp_path / "fake_fastfit.py"
    script.write_text(FAKE_FASTFIT)
    monkeypatch.setenv("PHASEFIT_FASTFIT_PYTHON", sys.executable)
    monkeypatch.setattr(run, "FASTFIT_SCRIPT", script)
    results = tmp_path / "results" / "runs.jsonl"
    args = ["--datasets", "toy", "--regimes", "4", "--methods", "fastfit", "--seeds", "1", "--model", tiny_model, "--profile", "smoke"]
    args += ["--cache-dir", str(tmp_path / "cache")]
    run.main([*args, "--data-root", str(root), "--results", str(results)])
    (record,) = [json.loads(line) for line in results.read_text().splitlines()]
    assert record["method"] == "fastfit" and record["test"]["accuracy"] == 0.5  # one class predicted for 5 + 5 rows
    assert record["phase_seconds"]["fastfit"] == 1.5 and record["config"]["versions"] == {"fast-fit": "fake"}
    assert record["resumed_from_step"] == 3 and not any((tmp_path / "cache" / "runs").glob("*"))  # the work folder goes with the record
    script.write_text("import sys; sys.exit('fast-fit broke')")
    with pytest.raises(RuntimeError, match="fastfit failed \\(exit 1\\):\\nfast-fit broke"):
        run.main([*args, "--seeds", "2", "--data-root", str(root), "--results", str(results)])


def toy_draw(tmp_path, train: dict[str, int], test: dict[str, int]):
    """A 4-per-class draw of a toy dataset written under ``tmp_path``."""
    from phasefit import load_data

    folder = tmp_path / "toy"
    folder.mkdir()
    pd.DataFrame(toy_rows(train, seed=1)).to_json(folder / "train.jsonl", orient="records", lines=True)
    pd.DataFrame(toy_rows(test, seed=2)).to_json(folder / "test.jsonl", orient="records", lines=True)
    return load_data(folder, seed=1, samples_per_class=4)


def test_a_fastfit_run_saves_its_clock_at_each_checkpoint_and_counts_earlier_sittings(tmp_path, monkeypatch):
    import sys

    data = toy_draw(tmp_path, {"sport": 6, "weather": 6}, {"sport": 3, "weather": 3})
    script = tmp_path / "fake_fastfit.py"
    script.write_text(FAKE_FASTFIT)
    monkeypatch.setenv("PHASEFIT_FASTFIT_PYTHON", sys.executable)
    monkeypatch.setattr(run, "FASTFIT_SCRIPT", script)
    work = tmp_path / "work"
    run.run_fastfit(data, "some-model", 1, work_dir=work, clock=run.RunClock(work, "abc"))
    asked = json.loads((work / "checkpoints" / "asked.json").read_text())
    assert asked == {"folder": str(work / "checkpoints"), "every_seconds": run.FASTFIT_CHECKPOINT_SECONDS}
    saved = json.loads((work / "elapsed.json").read_text())  # written when the script said it had saved a checkpoint
    assert saved["commits"] == ["abc"] and saved["seconds"] > 0
    later = run.RunClock(work, "def")
    outcome = run.run_fastfit(data, "some-model", 1, work_dir=work, clock=later)
    assert later.sittings == 2 and outcome["resumed_from_step"] == 3
    assert outcome["phase_seconds"]["fastfit"] == round(saved["seconds"] + 1.5, 2)


@pytest.mark.skipif(not run.fastfit_python().is_file(), reason="FastFit's own environment (.peers/fastfit, docs/benchmarks.md) is not set up")
def test_the_real_fastfit_package_resumes_from_its_last_checkpoint(tmp_path, monkeypatch):
    from phasefit.config import default_model_path

    data = toy_draw(tmp_path, {"sport": 8, "weather": 8}, {"sport": 4, "weather": 4})
    monkeypatch.setattr(run, "FASTFIT_CHECKPOINT_SECONDS", 0)  # a checkpoint after every step
    arguments = {**run.FASTFIT_DEFAULTS, "num_train_epochs": 2, "num_repeats": 1, "per_device_train_batch_size": 4}
    work = tmp_path / "work"
    first = run.run_fastfit(data, default_model_path(), seed=1, arguments=arguments, work_dir=work, clock=run.RunClock(work, "a"))
    (kept,) = (work / "checkpoints").glob("checkpoint-*")  # one kept: the last
    assert "resumed_from_step" not in first and kept.name == "checkpoint-4" and (work / "elapsed.json").is_file()
    # Started again on the same folder, the run continues from step 4 (the end): the same weights, the same answers.
    again = run.run_fastfit(data, default_model_path(), seed=1, arguments=arguments, work_dir=work, clock=run.RunClock(work, "b"))
    assert again["resumed_from_step"] == 4 and again["test"] == first["test"]
    # A checkpoint inside the schedule (here: one more epoch asked of the same folder) makes the Trainer read the
    # checkpoint's random state back before it trains on; torch's weights_only default once stopped it there.
    longer = run.run_fastfit(data, default_model_path(), seed=1, arguments={**arguments, "num_train_epochs": 3}, work_dir=work, clock=run.RunClock(work, "c"))
    assert longer["resumed_from_step"] == 4 and {path.name for path in (work / "checkpoints").glob("checkpoint-*")} == {"checkpoint-6"}


@pytest.mark.skipif(not run.fastfit_python().is_file(), reason="FastFit's own environment (.peers/fastfit, docs/benchmarks.md) is not set up")
def test_the_real_fastfit_package_trains_on_a_draw_and_answers_labels(tmp_path):
    from phasefit.config import default_model_path

    data = toy_draw(tmp_path, {"sport": 12, "weather": 12, "food": 12}, {"sport": 4, "weather": 4, "food": 4})
    outcome = run.run_fastfit(data, default_model_path(), seed=1, arguments={**run.FASTFIT_DEFAULTS, "num_train_epochs": 2})
    assert outcome["test"]["n_examples"] == 12 and 0 <= outcome["test"]["accuracy"] <= 1 and outcome["config"]["versions"]["fast-fit"]


def test_a_dataset_variant_reads_its_own_training_file_beside_the_base_datasets_splits(tmp_path):
    root = tmp_path / "data"
    (root / "clinc150" / "extra").mkdir(parents=True)
    pd.DataFrame(toy_rows({"sport": 10, "weather": 10}, seed=1)).to_json(root / "clinc150" / "train.jsonl", orient="records", lines=True)
    pd.DataFrame(toy_rows({"sport": 9, "weather": 3}, seed=3)).to_json(root / "clinc150" / "extra" / "train_imbalanced.jsonl", orient="records", lines=True)
    pd.DataFrame(toy_rows({"sport": 4, "weather": 4}, seed=2)).to_json(root / "clinc150" / "test.jsonl", orient="records", lines=True)
    files = run.split_files("clinc150-imbalanced", root)
    assert files == {"train": root / "clinc150" / "extra" / "train_imbalanced.jsonl", "test": root / "clinc150" / "test.jsonl"}
    data = run.load_benchmark_data("clinc150-imbalanced", "full", 1, root, {"max_validation_examples": 100})
    assert sorted(data.train.classes + data.validation.classes) == ["sport"] * 9 + ["weather"] * 3 and len(data.test) == 8
    assert run.plan_errors(["clinc150-imbalanced"], ["full"], ["ft"], root, "smoke") == []


def test_a_method_of_phases_joined_by_plus_is_a_recipe_made_on_the_spot(tmp_path, tiny_model):
    root = tmp_path / "data"
    (root / "toy").mkdir(parents=True)
    pd.DataFrame(toy_rows({"sport": 12, "weather": 12}, seed=1)).to_json(root / "toy" / "train.jsonl", orient="records", lines=True)
    pd.DataFrame(toy_rows({"sport": 4, "weather": 4}, seed=2)).to_json(root / "toy" / "test.jsonl", orient="records", lines=True)
    errors = run.plan_errors(["toy"], ["4"], ["dae+cl+ft+st", "st+ft", "dae+nope"], root, "smoke")
    assert not any("'dae+cl+ft+st'" in e for e in errors)
    assert any("method 'st+ft': recipe 'st+ft': must end with the one 'ft' phase" in e for e in errors)
    assert any("method 'dae+nope': expected one of" in e for e in errors)
    results = tmp_path / "runs.jsonl"
    run.main(
        ["--datasets", "toy", "--regimes", "4", "--methods", "dae+ft", "dae+cl+ft", "--seeds", "1", "--model", tiny_model, "--profile", "smoke"]
        + ["--data-root", str(root), "--results", str(results), "--cache-dir", str(tmp_path / "cache")]
    )
    records = {r["method"]: r for r in map(json.loads, results.read_text().splitlines())}
    assert records["dae+cl+ft"]["config"]["recipe"]["name"] == "dae+cl+ft" and set(records["dae+cl+ft"]["phase_stats"]) == {"dae", "cl", "ft"}
    assert records["dae+cl+ft"]["cached_phases"] == ["dae"]  # the same DAE as dae+ft's, from the cache


def test_the_dae_study_reports_only_daes_a_run_trained_and_draws_their_curves(tmp_path):
    from benchmarks.report.dae import dae_study_lines

    def record(profile: str, seed: int, stats: dict) -> dict:
        return {"dataset": "snips", "profile": profile, "seed": seed, "cached_phases": ["dae"] if stats.get("cached") else [], "phase_stats": {"dae": stats}}

    curve = {"train_loss": [[10, 9.0], [20, 7.0], [30, 6.0]]}
    trained = {"steps": 30, "first_logged_loss": 9.0, "last_logged_loss": 6.0, "curve": curve}
    records = [
        record("held-out-dae-20k", 1, trained),
        record("held-out-dae-20k", 2, {"cached": True}),
        record("held-out-plus", 1, trained),
    ]
    picture = tmp_path / "dae_curves.png"
    lines = dae_study_lines(records, picture, "results/dae_curves.png")
    rows = [line for line in lines if line.startswith("| snips")]
    assert rows == ["| snips | held-out-dae-20k | 1 | 30 | 9.000 → 6.000 |"]
    assert picture.stat().st_size > 0 and "![DAE training loss per step](results/dae_curves.png)" in lines
    assert dae_study_lines(records[1:], tmp_path / "none.png") == ["- No held-out run has trained a DAE of the study yet."]


def test_the_threshold_study_waits_for_its_planned_runs_then_applies_its_rule():
    from benchmarks.report.multilabel import threshold_scheme_lines

    def record(seed: int, method: str, per_label_macro: float) -> dict:
        comparison = {"global": {"micro_f1": 0.30, "macro_f1": 0.20}, "per_label": {"micro_f1": 0.29, "macro_f1": per_label_macro}}
        phase = "st" if method == "ft+st" else "ft"
        finished = f"2026-12-0{seed}T{method_order.index(method):02d}:00:00"
        return {
            "method": method,
            "seed": seed,
            "finished_at": finished,
            "phase_stats": {"ft": {"thresholds": []}, phase: {"threshold_schemes_two_fold": comparison}},
        }

    method_order = ["ft+st", "ft", "3phase"]

    from benchmarks.report.common import load_study_rules

    planned = load_study_rules()["multi_label_threshold"]["planned"]
    assert "no run records" in threshold_scheme_lines([{"method": "setfit", "seed": 1, "phase_stats": {}}])[0]
    better = [record(seed, method, 0.23) for seed in range(1, planned + 1) for method in ("ft+st", "ft", "3phase")][:planned]
    assert "**no verdict yet**" in threshold_scheme_lines(better[:-1])[0]
    assert "**per_label becomes the default**" in threshold_scheme_lines(better)[0] and "+3.00 points" in threshold_scheme_lines(better)[0]
    worse = [{**run, "phase_stats": record(run["seed"], run["method"], 0.203)["phase_stats"]} for run in better]
    assert "**global stays the default**" in threshold_scheme_lines(worse)[0]  # ahead in all, but by less than the margin
    # a run recorded after the planned ones is reported apart and cannot turn the verdict, wherever it sits in the file
    late = {**record(9, "ft", 0.10), "finished_at": "2026-12-31T00:00:00"}
    lines = threshold_scheme_lines([late, *better])
    assert "**per_label becomes the default**" in lines[0] and f"over {planned} run(s)" in lines[0] and "+3.00 points" in lines[0]
    assert lines[1].startswith("- Threshold scheme, 1 run(s) recorded after the verdict") and "-10.00 points" in lines[1]


def test_the_head_bias_study_pairs_its_profiles_by_draw_and_keeps_its_records_out_of_the_table():
    from benchmarks.report.common import load_study_rules
    from benchmarks.report.multilabel import head_bias_lines, multi_label_lines

    def record(profile: str, regime: str, seed: int, macro: float, bias: str | None = None) -> dict:
        comparison = {"global": {"micro_f1": 0.30, "macro_f1": macro}, "per_label": {"micro_f1": 0.2, "macro_f1": 0.9}}
        return {
            "config": {"ft": {"head_bias": bias or ("prior" if profile == "multi-label-prior" else "random")}},
            "dataset": "tags",
            "regime": regime,
            "method": "ft",
            "profile": profile,
            "seed": seed,
            "validation_macro_f1": macro,
            "test": {"micro_f1": 0.3, "macro_f1": macro},
            "phase_stats": {"ft": {"threshold_schemes_two_fold": comparison}},
        }

    planned = load_study_rules()["multi_label_head_bias"]["planned"]
    draws = [(regime, seed) for regime in ("8", "64") for seed in (1, 2, 3)]
    assert len(draws) == planned  # the rule's plan: 8 and 64 per label, seeds 1-3
    base = [record("multi-label", regime, seed, 0.05) for regime, seed in draws]
    prior = [record("multi-label-prior", regime, seed, 0.15) for regime, seed in draws]
    assert "no paired run yet" in head_bias_lines(base)[0]
    assert "**no verdict yet**" in head_bias_lines(base + prior[:-1])[0]
    assert "**the prior bias becomes the MLP head's default**" in head_bias_lines(base + prior)[0] and "+10.00 points" in head_bias_lines(base + prior)[0]
    unpaired = [{**run, "seed": run["seed"] + 10} for run in prior]  # other draws do not pair
    assert "no paired run yet" in head_bias_lines(base + unpaired)[0]
    worse = [record("multi-label-prior", regime, seed, 0.053) for regime, seed in draws]
    assert "**the random bias stays the default**" in head_bias_lines(base + worse)[0]
    table = [line for line in multi_label_lines(base + prior) if line.startswith("| tags")]
    assert table == ["| tags | 8 | 30.00 ± 0.00 (3) / 5.00 ± 0.00 (3) |", "| tags | 64 | 30.00 ± 0.00 (3) / 5.00 ± 0.00 (3) |"]
    # once the prior is the default: the base column's random-bias records move to superseded/ and it reruns with the
    # prior; the verdict still reads the random-bias records, and the table only the current ones
    legacy = [{**run, "config": {}} for run in base]  # made before the option existed: they ran a random bias
    rerun = [record("multi-label", regime, seed, 0.20, bias="prior") for regime, seed in draws]
    lines = multi_label_lines(rerun + prior, superseded=legacy)
    assert any("**the prior bias becomes the MLP head's default**" in line and "+10.00 points" in line for line in lines)
    assert "no paired run yet" in head_bias_lines(rerun + prior)[0]  # a prior-bias record is never the base arm
    assert [line for line in lines if line.startswith("| tags")][0] == "| tags | 8 | 30.00 ± 0.00 (3) / 20.00 ± 0.00 (3) |"
    # and the threshold study, judged on the records of its time, reads the moved ones too
    threshold = [line for line in lines if line.startswith("- Threshold scheme")]
    assert threshold == [line for line in multi_label_lines(legacy + rerun + prior) if line.startswith("- Threshold scheme")]
    assert "over 12 run(s)" in threshold[0]


def test_a_record_keeps_each_learning_curve_thinned_with_its_last_point():
    long = [[step, 10.0 - step / 100] for step in range(1, 626)]
    stats = run.recorded_stats({"steps": 625, "curve": {"train_loss": long, "eval_accuracy": long[:12]}})
    assert stats["steps"] == 625 and len(stats["curve"]["train_loss"]) <= run.CURVE_POINTS
    assert stats["curve"]["train_loss"][0] == long[0] and stats["curve"]["train_loss"][-1] == long[-1]
    assert stats["curve"]["eval_accuracy"] == long[:12]  # a short series is kept whole
    assert run.recorded_stats({"cached": True}) == {"cached": True}


def test_the_fastfit_bar_is_paired_per_cell_and_asks_clinc150_at_8_to_beat_fastfit_and_setfit():
    seeded = {}
    for dataset in ("sst2", "clinc150"):
        seeded[(dataset, "8", "fastfit")] = {1: 70.0, 2: 71.0, 3: 72.0}
        seeded[(dataset, "8", "ft+st")] = {1: 73.0, 2: 74.5, 3: 75.0}
    seeded[("clinc150", "8", "setfit")] = {1: 60.0, 2: 61.0, 3: 62.5}
    seeded[("snips", "8", "fastfit")] = {1: 90.0, 2: 91.0}
    keys = report.in_table_order({(d, r) for d, r, _ in seeded})
    lines = report.fastfit_bar_lines(seeded, keys)
    assert lines[0].startswith("- Not behind fastfit in any cell where both ran: over 2 judged cell(s) ft+st loses in 0: **met so far**.")
    assert "Cells where fastfit ran and ft+st has not: snips/8." in lines[0]
    assert lines[1] == "- On clinc150 at 8 per class ft+st beats fastfit and setfit: **met**."
    assert any(line.startswith("- clinc150, 8: ft+st beats setfit: mean paired difference +13.00 points over 3 seeds") for line in lines)
    seeded[("sst2", "8", "ft+st")] = {1: 60.0, 2: 61.2, 3: 62.1}
    seeded[("clinc150", "8", "setfit")] = {1: 73.0, 2: 75.0, 3: 74.0}
    lines = report.fastfit_bar_lines(seeded, keys)
    assert "ft+st loses in 1 (sst2/8): **not met**." in lines[0]
    assert lines[1] == "- On clinc150 at 8 per class ft+st beats fastfit and setfit: **not met**."
    assert report.fastfit_bar_lines({}, []) == ["- No fastfit runs on test yet."]


def test_the_imbalanced_clinc150_cell_judges_3phase_against_no_imb_and_ft_paired():
    cell = ("clinc150-imbalanced", "full")
    assert report.imbalanced_cell_lines({}) == ["- clinc150-imbalanced, full: no 3phase run yet."]
    seeded = {(*cell, "ft"): {1: 80.0, 2: 81.0}}
    assert report.imbalanced_cell_lines(seeded) == ["- clinc150-imbalanced, full: no 3phase run yet (ft ran)."]
    seeded[(*cell, "3phase")] = {1: 83.0, 2: 84.5, 3: 85.0}
    seeded[(*cell, "no-imb")] = {1: 83.1}
    lines = report.imbalanced_cell_lines(seeded)
    assert lines[0] == "- clinc150-imbalanced, full: 3phase has too few shared seeds against no-imb."
    assert lines[1].startswith("- clinc150-imbalanced, full: 3phase beats ft: mean paired difference +3.25 points over 2 seeds")


def test_every_live_profile_still_runs_the_head_bias_its_records_ran():
    """A default that changes must not change what a profile means: rerunning a run with its profile would otherwise
    train something its record does not describe (ft.head_bias became prior on 2026-12-07; records before it ran random)."""
    from benchmarks.paths import RESULTS
    from benchmarks.records import read_json_lines
    from phasefit.config import FTConfig

    checked, mismatched = 0, []
    for records_file in RESULTS.rglob("*.jsonl"):
        if "superseded" in records_file.parts:
            continue
        for record in read_json_lines(records_file):
            ft = record.get("config", {}).get("ft")
            if ft is None or ft.get("head", "mlp") != "mlp" or not run.profile_path(record["profile"]).is_file():
                continue
            profile = run.load_profile(record["profile"])
            if profile.get("superseded"):
                continue
            checked += 1
            runs_now = (profile.get("ft") or {}).get("head_bias", FTConfig().head_bias)
            if runs_now != ft.get("head_bias", "random"):
                mismatched.append((records_file.name, record["profile"], record["method"], record["seed"]))
    assert checked > 0
    assert not mismatched


def test_a_no_validation_run_trains_on_its_draw_alone_refits_on_all_of_it_and_is_reported_beside_the_same_draws(tmp_path, tiny_model, capsys):
    from benchmarks.report import no_validation_lines

    root = toy_splits(tmp_path / "data")
    smoke = run.load_profile("smoke")
    shipped = run.load_profile("no-validation")
    assert shipped["no_validation_split"] is True and shipped["refit_on_all_labels"] == "auto"
    profile_file = tmp_path / "no-validation.yaml"
    profile_file.write_text(json.dumps({**smoke, "no_validation_split": True, "refit_on_all_labels": "auto"}))  # JSON is YAML
    with pytest.raises(SystemExit):
        run.main(["--datasets", "toy", "--regimes", "10", "--methods", "ft", "--profile", str(profile_file), "--data-root", str(root)])
    assert "trains without the validation split, so its runs are not the table's: give them their own --results file" in capsys.readouterr().err

    results = tmp_path / "no_validation" / "runs.jsonl"
    common = ["--regimes", "10", "--seeds", "1", "--model", tiny_model, "--data-root", str(root), "--cache-dir", str(tmp_path / "cache")]
    run.main(["--datasets", "toy", "--methods", "ft", "tuned-ft", *common, "--profile", str(profile_file), "--results", str(results)])
    records = {record["method"]: record for record in map(json.loads, results.read_text().splitlines())}
    assert set(records) == {"ft", "tuned-ft"}
    for record in records.values():
        assert record["n_train"] == 16 and record["n_validation"] == 4, "20 % of the 20-row draw chooses; the validation split is not read"
        assert record["test_split"] == "test" and record["test"]["n_examples"] == 10
    assert "budget_pass" in records["ft"]["phase_stats"], "the run trains again on all 20 labelled rows"
    tuned = records["tuned-ft"]
    losses = {trial["learning_rate"]: trial["best_validation_loss"] for trial in tuned["grid"]}
    assert sorted(losses) == sorted(run.TUNED_FT_LEARNING_RATES), "one trial a rate, each chosen on the 4 carved rows"
    assert tuned["chosen_learning_rate"] == min(losses, key=lambda rate: (losses[rate], rate)), "the rate is chosen by their loss"
    refit = tuned["phase_stats"]["ft"]
    assert tuned["phase_stats"]["budget_pass"]["ft"]["chosen_learning_rate"] == tuned["chosen_learning_rate"]
    assert refit["steps"] == tuned["config"]["ft"]["fixed_steps"] and tuned["config"]["ft"]["learning_rate"] == tuned["chosen_learning_rate"]
    assert "learning_rate_trials" not in refit, "all labels are trained on once, at the chosen rate"
    with_validation = tmp_path / "runs.jsonl"
    run.main(["--datasets", "toy", "--methods", "ft", *common, "--profile", "smoke", "--results", str(with_validation)])
    [table_run] = map(json.loads, with_validation.read_text().splitlines())
    assert table_run["n_train"] == 20 and table_run["n_validation"] == 20

    lines = no_validation_lines(list(records.values()), report.by_seed([table_run], "accuracy"))
    assert lines[0].startswith("| dataset | regime | ft+st (no validation) | tuned-ft (no validation) | ft+st (with validation) |")
    assert lines[2].startswith("| toy | 10 | – | ") and "(1 seed)" in lines[2]
    assert no_validation_lines([], {}) == ["- No run yet."]


def test_no_validation_lines_pair_each_side_by_seed():
    from benchmarks.report import no_validation_lines

    def record(method: str, seed: int, accuracy: float) -> dict:
        return {"dataset": "sst2", "regime": "8", "method": method, "seed": seed, "test": {"accuracy": accuracy}}

    alone = [record("ft+st", seed, 0.80 + seed / 100) for seed in (1, 2, 3)] + [record("tuned-ft", seed, 0.70) for seed in (1, 2, 3)]
    table = [record("setfit", seed, 0.60 + seed / 1000) for seed in (1, 2, 3)] + [record("ft+st", seed, 0.80 + seed / 100) for seed in (1, 2)]
    lines = no_validation_lines(alone, report.by_seed(table, "accuracy"))
    assert lines[2] == "| sst2 | 8 | 82.00 ± 1.00 (3) | 70.00 ± 0.00 (3) | 81.50 ± 0.71 (2) | – | 60.20 ± 0.10 (3) |"
    assert lines[4].startswith("- sst2, 8: ft+st (no validation) beats setfit: mean paired difference +21.80 points over 3 seeds")
    assert lines[5].startswith("- sst2, 8: ft+st (no validation) beats tuned-ft (no validation): mean paired difference +12.00 points")
    assert lines[6].startswith("- sst2, 8: ft+st (no validation) ties with ft+st (with validation): mean paired difference +0.00 points over 2 seeds")


def test_a_capped_profile_cuts_each_phases_epochs_to_what_it_may_read():
    options = {"ft": {"epochs": 1, "head_bias": "random"}, "seed": 1}
    capped = {"ft_max_texts": 20000}
    assert run.with_reading_capped(options, capped, 80000) == {"ft": {"epochs": 0.25, "head_bias": "random"}, "seed": 1}
    assert run.with_reading_capped(options, capped, 9000)["ft"]["epochs"] == 1, "a split under the cap is read once, as the profile says"
    assert run.with_reading_capped({}, {"ft_max_texts": 1000}, 100_000)["ft"]["epochs"] == 0.01
    assert run.with_reading_capped(options, {}, 80000) == options
    # CL and Joint read about pairs_per_example pairs a row an epoch (4 by default): 20,000 pairs of 10,000 rows is half an epoch.
    both = run.with_reading_capped({"cl": {"epochs": 3}, "joint": {"pairs_per_example": 2}}, {"cl_max_pairs": 20000, "ft_max_texts": 20000}, 10000)
    assert both["cl"]["epochs"] == 0.5 and both["joint"]["epochs"] == 1 and both["ft"]["epochs"] == 2
    assert run.with_reading_capped({"cl": {"epochs": 3}}, {"cl_max_pairs": 20000}, 1000)["cl"]["epochs"] == 3
    profile = run.load_profile("full-capped")
    assert profile["ft_max_texts"] == 20000 and profile["ft"]["epochs"] == 1
    paper = run.load_profile("paper-capped")
    assert paper["ft_max_texts"] == paper["cl_max_pairs"] == paper["dae"]["max_texts"] == 20000


def test_capped_runs_keep_their_own_file_and_judge_a_full_data_cell_only_where_no_uncapped_run_exists(tmp_path):
    root = toy_splits(tmp_path / "data")
    refused = run.plan_errors(["toy"], ["full"], ["3phase"], root, "paper-capped", run.DEFAULT_RESULTS)
    assert len(refused) == 1 and "caps what its phases read (cl_max_pairs, ft_max_texts)" in refused[0] and "paper_capped" in refused[0]
    assert run.plan_errors(["toy"], ["full"], ["3phase"], root, "paper-capped", run.PAPER_CAPPED_RESULTS) == []
    seeded = {("snips", "full", "ft"): {1: 98.0}, ("snips", "8", "3phase"): {1: 90.0}}
    capped = {("snips", "full", "3phase"): {1: 97.0}, ("atis", "full", "3phase"): {1: 95.0}, ("atis", "full", "no-imb"): {1: 94.0}}
    merged, taken = report.with_capped_full_cells(seeded, capped)
    assert taken == ["atis/full"], "snips/full has an uncapped run: its capped runs are not mixed in"
    assert merged == {**seeded, ("atis", "full", "3phase"): {1: 95.0}, ("atis", "full", "no-imb"): {1: 94.0}}
    assert report.capped_cells_line(taken)[0].startswith("- Judged under a cap (profile paper-capped") and report.capped_cells_line([]) == []
