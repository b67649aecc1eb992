"""The project's own error types: each carries a message written for the person at the keyboard."""

from __future__ import annotations


class PhaseFitError(Exception):
    """Base class: something the user can fix (a file, a row, an option)."""


class DataError(PhaseFitError, ValueError):
    """A dataset that cannot be read or used: names the file, row or column at fault."""


class ConfigError(PhaseFitError, ValueError):
    """An option, recipe or config file that is unknown or out of range."""


class ModelFilesError(PhaseFitError, OSError):
    """A model path that does not exist or is not a phasefit model directory."""
