"""Falco's priorities. Smaller number = more severe (EMERGENCY=0 ... DEBUG=7)."""

from __future__ import annotations

from enum import IntEnum


class Priority(IntEnum):
    EMERGENCY = 0
    ALERT = 1
    CRITICAL = 2
    ERROR = 3
    WARNING = 4
    NOTICE = 5
    INFORMATIONAL = 6
    DEBUG = 7

    @property
    def label(self) -> str:
        """Long name as Falco prints it in outputs: ``Critical``, ``Informational``..."""
        return self.name.capitalize()

    @classmethod
    def parse(cls, text: str) -> Priority:
        """Case-insensitive; accepts ``info`` for INFORMATIONAL. Raises ``ValueError``."""
        t = str(text).strip().upper()
        if t == "INFO":
            t = "INFORMATIONAL"
        try:
            return cls[t]
        except KeyError:
            raise ValueError(f"Invalid priority '{text}'") from None


PRIORITY_NAMES = [p.name.lower() for p in Priority]
