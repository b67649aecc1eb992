"""``torchrun ... distributed_batches.py MODEL OUT``: which pair rows each process trains on in one epoch of phase 2.

The pairs come from phasefit's own pair builder and the batches from the trainer phasefit uses;
the pair's row number rides in the ``score`` column (the trainer passes it through as the label).
The main process writes ``{rank: [row, ...]}`` to OUT.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from accelerate.utils import gather_object
from conftest import toy_rows
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainingArguments
from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss

from phasefit import distributed
from phasefit.config import CLConfig
from phasefit.phases.cl import pair_dataset
from phasefit.phases.common import _SentenceTrainer, common_arguments


def main() -> None:
    model_path, output = sys.argv[1], Path(sys.argv[2])
    rows = toy_rows({"sport": 30, "weather": 20, "food": 7}, seed=4)
    labels = np.array([[["sport", "weather", "food"].index(row["label"])] for row in rows])
    config = CLConfig(batch_size=8)
    pairs = pair_dataset([row["text"] for row in rows], labels, config, seed=0)
    pairs = pairs.remove_columns("score").add_column("score", [float(i) for i in range(len(pairs))])
    model = SentenceTransformer(model_path, device="cpu")
    arguments = SentenceTransformerTrainingArguments(**common_arguments(config, 0, output.parent / "unused"))
    trainer = _SentenceTrainer(model=model, args=arguments, train_dataset=pairs, loss=CosineSimilarityLoss(model))
    mine = [int(value) for batch in trainer.get_train_dataloader() for value in batch["label"].tolist()]
    everyone = gather_object([mine])  # one list per process, in rank order
    if distributed.is_main_process():
        output.write_text(json.dumps({"pairs": len(pairs), "batch_size": config.batch_size, "ranks": everyone}))
    distributed.close()


if __name__ == "__main__":
    main()
