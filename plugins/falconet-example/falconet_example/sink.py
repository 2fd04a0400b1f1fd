"""An alert output: appends each alert as one JSON line to a file.

The engine runs it on its own thread behind a bounded queue; ``send`` may block or raise without
hurting the event loop (a raise is counted in ``falconet_output_failures_total{output="example"}``).
"""

from __future__ import annotations

import json
from typing import IO

from falconet.api import Alert, Priority


class JsonLinesSink:
    name = "example"

    def __init__(self, path: str, min_priority: Priority = Priority.DEBUG) -> None:
        self.path = path
        self.min_priority = min_priority
        self._f: IO[str] | None = None

    def start(self) -> None:
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def send(self, alert: Alert) -> None:
        assert self._f is not None
        self._f.write(json.dumps({"rule": alert.rule, "priority": alert.priority.label,
                                  "source": alert.source, "output": alert.output,
                                  "fields": alert.output_fields}, default=str) + "\n")

    def flush(self) -> None:
        if self._f is not None:
            self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
