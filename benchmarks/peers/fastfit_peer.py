"""FastFit (Yehudai & Bendel, NAACL 2024 demo; the ``fast-fit`` package) as a benchmark peer, run in its own environment.

fast-fit 1.2.1 builds its Trainer with the ``tokenizer=`` argument that transformers 5 removed, so it cannot run on
phasefit's stack; the runner calls this script with the Python of a separate environment (transformers 4.44; see
docs/benchmarks.md) and reads its answer back. This file imports nothing of phasefit or of the benchmarks package.

    python fastfit_peer.py request.json answer.json

The request: ``{"model", "seed", "threads", "arguments": {...}, "train": {"texts", "labels"}, "validation": {...},
"predict": {"validation": [texts], "test": [texts]}}``, and optionally ``"checkpoints": {"folder", "every_seconds"}``: then
training saves a checkpoint into the folder at most that many seconds apart (the Trainer's own checkpoint, one kept),
prints CHECKPOINT_LINE after each, and a run started again on the same folder continues from its last checkpoint.
The answer: ``{"predictions": {split: [labels]}, "seconds", "versions", "resumed_from_step"}`` (seconds: this
process's training); the runner scores the predictions itself.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from transformers import TrainerCallback

CHECKPOINT_LINE = "fastfit-peer: checkpoint saved"  # the runner's FASTFIT_CHECKPOINT_LINE


def main(request_path: str, answer_path: str) -> None:
    import datasets
    import fastfit
    import fastfit.train
    import torch
    import transformers
    from fastfit import FastFitTrainer

    # fast-fit loads its accuracy metric with datasets.load_metric, which fetches a script from GitHub; offline, the
    # same accuracy comes from scikit-learn. It only scores Trainer evaluations, which a run with its defaults skips.
    fastfit.train.load_metric = lambda *args, **kwargs: _Accuracy()
    with open(request_path, encoding="utf-8") as handle:
        request = json.load(handle)
    if request.get("threads"):
        torch.set_num_threads(int(request["threads"]))
    started = time.perf_counter()
    splits = {split: datasets.Dataset.from_dict({"text": request[split]["texts"], "label": request[split]["labels"]}) for split in ("train", "validation")}
    # fast-fit insists on a "test" split once it is given a dataset; it gets validation's rows there, never the test labels.
    dataset = datasets.DatasetDict({**splits, "test": splits["validation"]})
    checkpoints = request.get("checkpoints")
    trainer = FastFitTrainer(
        model_name_or_path=request["model"],
        label_column_name="label",
        text_column_name="text",
        dataset=dataset,
        seed=request["seed"],
        report_to="none",
        **request["arguments"],
        **(checkpoint_arguments(checkpoints["folder"]) if checkpoints else {}),
    )
    resumed_from_step = 0
    if checkpoints:
        trainer.trainer.add_callback(TimedCheckpoints(checkpoints["every_seconds"]))
        resumed_from_step = int(Path(trainer.checkpoint).name.split("-")[-1]) if trainer.checkpoint else 0
    with torch.serialization.safe_globals(_numpy_random_state_types()):
        model = trainer.train()
    seconds = time.perf_counter() - started
    model.eval()
    tokenizer = trainer.tokenizer
    id2label = model.config.id2label
    predictions = {}
    for split, texts in request["predict"].items():
        labels = []
        for start in range(0, len(texts), 64):
            batch = tokenizer(
                texts[start : start + 64],
                truncation=True,
                max_length=request["arguments"].get("max_text_length", 128),
                padding=True,
                return_attention_mask=True,
                return_tensors="pt",
            )
            with torch.inference_mode():
                logits = model.inference_forward(batch["input_ids"], batch["attention_mask"])
            labels += [id2label[int(i)] for i in logits.argmax(dim=-1)]
        predictions[split] = labels
    versions = {"fast-fit": getattr(fastfit, "__version__", "1.2.1"), "transformers": transformers.__version__, "torch": torch.__version__}
    with open(answer_path, "w", encoding="utf-8") as handle:
        json.dump({"predictions": predictions, "seconds": round(seconds, 2), "versions": versions, "resumed_from_step": resumed_from_step}, handle)


def checkpoint_arguments(folder: str) -> dict:
    """Trainer arguments that keep one checkpoint in ``folder`` and let fast-fit resume from it.

    fast-fit resumes from the newest checkpoint of its output folder, and refuses a folder that holds files but no
    checkpoint: such a folder is what a run stopped before its first checkpoint leaves, so it is emptied here.
    Checkpoints are saved only when TimedCheckpoints asks (save_strategy "no" turns off the step schedule)."""
    from transformers.trainer_utils import get_last_checkpoint

    if Path(folder).is_dir() and get_last_checkpoint(folder) is None:
        shutil.rmtree(folder)
    return {"output_dir": folder, "overwrite_output_dir": False, "save_strategy": "no", "save_total_limit": 1}


def _numpy_random_state_types() -> list:
    """What numpy's random state in a checkpoint's rng_state.pth is pickled with. transformers 4.44 reads that file
    with torch.load's default, which torch 2.6 turned to weights_only, and without these a resumed run stops there."""
    import numpy

    return [numpy.core.multiarray._reconstruct, numpy.ndarray, numpy.dtype, type(numpy.dtype(numpy.uint32))]


class TimedCheckpoints(TrainerCallback):
    """Asks the Trainer for a checkpoint once ``every_seconds`` have passed since the last one, and tells the runner."""

    def __init__(self, every_seconds: float):
        self.every_seconds = every_seconds
        self.last = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if time.perf_counter() - self.last >= self.every_seconds:
            control.should_save = True
        return control

    def on_save(self, args, state, control, **kwargs):
        self.last = time.perf_counter()
        print(CHECKPOINT_LINE, state.global_step, flush=True)
        return control


class _Accuracy:
    def compute(self, predictions, references):
        from sklearn.metrics import accuracy_score

        return {"accuracy": float(accuracy_score(references, predictions))}


if __name__ == "__main__":
    main(*sys.argv[1:3])
