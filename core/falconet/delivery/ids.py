"""Alert ids: a UUID per alert, stable across retries, so receivers can drop duplicates.

Made in the hot loop once per alert (never per event), so it must be cheap: a random 64-bit
prefix drawn once per engine start plus a 48-bit counter, laid out as an RFC 9562 version 8
("custom") UUID. Unique within a run by the counter, across runs and hosts by the prefix.
"""

from __future__ import annotations

import itertools
import secrets


class AlertIds:
    """``next()`` gives ``xxxxxxxx-xxxx-8xxx-yxxx-cccccccccccc`` (c = the counter)."""

    def __init__(self) -> None:
        r = secrets.randbits(62)
        hi = f"{r >> 30:08x}"[-8:]
        mid = f"{(r >> 14) & 0xFFFF:04x}"
        ver = f"8{(r >> 2) & 0xFFF:03x}"
        var = f"{0x8000 | ((r & 0x3) << 12) | (secrets.randbits(12)):04x}"
        self._prefix = f"{hi}-{mid}-{ver}-{var}-"
        self._count = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._count) & 0xFFFFFFFFFFFF:012x}"


#: the engine's generator (the pipeline and aggregation summaries share it)
ALERT_IDS = AlertIds()
