"""A Hugging Face style model card (README.md) for a trained phasefit model."""

from __future__ import annotations

from typing import Any

import yaml

from ..config import PHASE_TITLES, default_model_path
from ..metrics import score_columns


def render_model_card(result: Any) -> str:
    """Markdown with YAML front matter: base model, data, recipe, every option, scores, labels, use and limits."""
    config = result.config.to_dict()
    test = result.test_metrics
    base_model = "sentence-transformers/all-MiniLM-L6-v2" if config["model"] == default_model_path() else config["model"]
    front = {
        "library_name": "sentence-transformers",
        "pipeline_tag": "text-classification",
        "tags": ["phasefit", "text-classification", f"recipe-{result.recipe.name}"],
        "base_model": base_model,
    }
    if test:
        front["model-index"] = [
            {
                "name": f"phasefit {result.recipe.name}",
                "results": [
                    {
                        "task": {"type": "text-classification"},
                        "metrics": [{"type": name, "value": round(test[name], 4)} for name, _ in score_columns(test)],
                    }
                ],
            }
        ]
    columns = score_columns(test or result.validation_metrics or {})
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "", f"# Text classifier trained with phasefit ({result.recipe.name})", ""]
    lines += [
        f"Base encoder: `{base_model}`. Recipe `{result.recipe.name}`: {result.recipe} ({result.recipe.description}).",
        "",
        "## Data",
        "",
        f"- Source: `{result.data_source}`; text column `{config['text_column']}`, label column(s) {', '.join(f'`{c}`' for c in config['label_columns'])}.",
        f"- {result.data_sizes}",
        *[f"- {note}" for note in result.data_notes],
        "",
        "## Scores",
        "",
        "| split | " + " | ".join(title for _, title in columns) + " | examples |",
        "|---|" + "---|" * (len(columns) + 1),
    ]
    for split, metrics in (("validation", result.validation_metrics), ("test", test)):
        if metrics:
            lines.append(f"| {split} | " + " | ".join(f"{metrics[key]:.4f}" for key, _ in columns) + f" | {metrics['n_examples']} |")
    lines += ["", f"## Labels ({len(result.model.labels)})", "", ", ".join(f"`{label}`" for label in result.model.labels), ""]
    lines += [
        "## Training options",
        "",
        "```yaml",
        yaml.safe_dump({**config, "model": base_model, "recipe": result.config.recipe}, sort_keys=False).strip(),
        "```",
        "",
    ]
    lines += ["Wall time per phase: " + ", ".join(f"{PHASE_TITLES[p]} {s:.0f} s" for p, s in result.phase_seconds.items()) + ".", ""]
    lines += [
        "## Use",
        "",
        "```python",
        "from phasefit import PhaseFitModel",
        'model = PhaseFitModel.from_pretrained("path/to/this/folder")',
        'model.predict(["some text"])',
        "```",
        "",
        '`SentenceTransformer("path/to/this/folder")` loads the fine-tuned encoder alone, for embeddings.',
        "",
        "## Intended use and limits",
        "",
        "- Classifies texts into the labels above, for texts like the training data; any other input still gets one of these labels.",
        f"- Texts longer than {result.model.info.get('max_length')} tokens are truncated.",
        "- Scores are from one training run and one seed; small test sets and few labelled examples make them noisy.",
        "- The model inherits the biases of its base encoder and of its training data.",
    ]
    return "\n".join(lines) + "\n"
