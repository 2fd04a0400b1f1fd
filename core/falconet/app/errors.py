"""The one error a start-up step raises."""

from __future__ import annotations


class StartupError(Exception):
    """The engine cannot start; the message says exactly why (printed without traceback)."""
