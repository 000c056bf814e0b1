"""The error types zoo reports to a user as one line (``zoo`` prints ``<command>: error: <message>``).

A primitive module (no zoo imports), so data, encoders, methods and the CLI can all raise and catch them.
"""

from __future__ import annotations


class DataError(ValueError):
    """Bad or missing data (file, split, shape, column): reported by the CLI as one line, before training."""


class InputError(DataError):
    """A tensor, label set or setting that a public entry point refuses (dtype, range, shape, batch size)."""
