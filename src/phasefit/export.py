"""ONNX export of a trained model: token ids in, class probabilities out (encoder + pooling + head in one graph)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import ConfigError
from .model import PhaseFitModel, replace_directory


class _ProbabilityGraph(nn.Module):
    def __init__(self, model: PhaseFitModel) -> None:
        super().__init__()
        self.encoder = model.encoder
        self.head = model.head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        features = {"input_ids": input_ids, "attention_mask": attention_mask}
        embedding = self.encoder(features)["sentence_embedding"]
        return torch.softmax(self.head(embedding), dim=-1)


def export_onnx(model_dir: str | Path, output: str | Path, opset: int = 17) -> Path:
    """Write ``model.onnx`` (inputs ``input_ids``, ``attention_mask``; output ``probabilities``), the tokenizer and labels."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ConfigError("ONNX export needs the onnx package (pip install onnx onnxscript; onnxruntime to run it).") from None
    model = PhaseFitModel.from_pretrained(model_dir, device="cpu")
    graph = _ProbabilityGraph(model).eval()
    sample = model.encoder.tokenize(["an example sentence to trace", "another"])
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.staging-", dir=output.parent))
    try:
        dynamic = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}, "probabilities": {0: "batch"}}
        torch.onnx.export(
            graph,
            (sample["input_ids"], sample["attention_mask"]),
            str(staging / "model.onnx"),
            input_names=["input_ids", "attention_mask"],
            output_names=["probabilities"],
            dynamic_axes=dynamic,
            opset_version=opset,
            dynamo=False,
        )
        model.encoder.tokenizer.save_pretrained(str(staging))
        (staging / "phasefit_onnx.json").write_text(
            json.dumps({"labels": model.labels, "max_length": model.encoder.max_seq_length, "inputs": ["input_ids", "attention_mask"], "output": "probabilities"}, indent=2) + "\n",
            encoding="utf-8",
        )
        replace_directory(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output


def onnx_predict_proba(export_dir: str | Path, texts: list[str]) -> np.ndarray:
    """Run an exported model with onnxruntime (for checks and for users without torch at inference)."""
    import onnxruntime
    from transformers import AutoTokenizer

    export_dir = Path(export_dir)
    meta = json.loads((export_dir / "phasefit_onnx.json").read_text(encoding="utf-8"))
    tokenizer = AutoTokenizer.from_pretrained(str(export_dir))
    encoded = tokenizer(texts, padding=True, truncation=True, max_length=meta["max_length"], return_tensors="np")
    session = onnxruntime.InferenceSession(str(export_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = {"input_ids": encoded["input_ids"].astype(np.int64), "attention_mask": encoded["attention_mask"].astype(np.int64)}
    return session.run(["probabilities"], feeds)[0]
