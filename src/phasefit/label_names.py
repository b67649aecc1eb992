"""Class names as text: what a label says, for heads initialised from its embedding.

Labels are often identifiers (``atis_flight#atis_airfare``, ``PlayMusic``, ``Sci/Tech``); the
encoder reads words. :func:`label_text` turns an identifier into words without knowing the data
set; a descriptions file (label → short description) overrides it where names are cryptic.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Mapping, Sequence

import yaml

from .errors import DataError

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEPARATORS = re.compile(r"[_\-./\\:|]+")


def label_text(label: str, prefix: str = "") -> str:
    """``'atis_flight#atis_airfare'`` → ``'flight and airfare'`` (with prefix ``'atis_'``); ``'PlayMusic'`` → ``'play music'``."""
    parts = [part[len(prefix) :] if prefix and part.startswith(prefix) else part for part in label.split("#")]
    words = [" ".join(_CAMEL.sub(" ", _SEPARATORS.sub(" ", part)).split()).lower() for part in parts]
    return " and ".join(word for word in words if word) or label


def say_nothing(texts: Sequence[str]) -> bool:
    """Whether no class text holds a letter (labels such as ``0``, ``1``, ``2``): nothing an encoder can read a class from."""
    return not any(re.search(r"[^\W\d_]", text) for text in texts)


def common_prefix(labels: Sequence[str]) -> str:
    """The identifier prefix every label shares, up to and including its last separator (``'atis_'``), else ``''``."""
    parts = [part for label in labels for part in label.split("#")]
    if len(set(parts)) < 2:
        return ""
    prefix = os.path.commonprefix(parts)
    cut = max(prefix.rfind(separator) for separator in "_-.:/|")
    return prefix[: cut + 1] if cut >= 0 else ""


def label_texts(labels: Sequence[str], descriptions: Mapping[str, str] | None = None) -> list[str]:
    """The text that stands for each label: its description where one is given, else its name in words."""
    prefix = common_prefix(labels)
    descriptions = descriptions or {}
    return [descriptions.get(label) or label_text(label, prefix) for label in labels]


def read_label_descriptions(path: str | Path, labels: Sequence[str] | None = None) -> dict[str, str]:
    """A YAML / JSON mapping ``label: description`` (or a two-column TSV); names the file and the label at fault."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"label descriptions {path}: no such file.")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".tsv":
        found = {}
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                cells = line.split("\t")
                if len(cells) != 2:
                    raise DataError(f"label descriptions {path}, line {number}: write 'label<TAB>description' ({len(cells)} columns found).")
                found[cells[0].strip()] = cells[1].strip()
    else:
        try:
            found = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as error:
            raise DataError(
                f"label descriptions {path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'} ({str(error).splitlines()[0]})."
            ) from None
        if not isinstance(found, dict):
            raise DataError(f"label descriptions {path}: expected a mapping 'label: description', found {type(found).__name__}.")
    descriptions = {}
    for label, description in found.items():
        if not isinstance(description, str) or not description.strip():
            raise DataError(f"label descriptions {path}: label {label!r} needs a non-empty text description, found {description!r}.")
        descriptions[str(label)] = description.strip()
    if labels is not None:
        unknown = sorted(set(descriptions) - set(labels))
        if unknown:
            raise DataError(
                f"label descriptions {path}: {', '.join(map(repr, unknown[:5]))} not among the training labels ({', '.join(labels[:8])}{', ...' if len(labels) > 8 else ''})."
            )
    return descriptions
