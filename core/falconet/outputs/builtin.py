"""The built-in ``outputs`` plugin: stdout (text or JSON), file and webhook sinks from the
``outputs`` section of ``falconet.yaml``. It is registered through ``falconet_alert_sinks`` like
any third-party output; copy this module to write your own."""

from __future__ import annotations

from typing import Any

from falconet.api import hookimpl
from falconet.outputs.format import Formatter
from falconet.outputs.stream import FileSink, StreamSink
from falconet.outputs.webhook import WebhookSink
from falconet.priorities import Priority


@hookimpl
def falconet_alert_sinks(engine: Any) -> list[Any]:
    cfg = engine.config
    outs = cfg["outputs"]
    fmt = Formatter.from_config(cfg)
    as_json = Formatter.from_config(cfg, json_output=True)
    sinks: list[Any] = []
    so = outs["stdout"]
    if so["enabled"]:
        sinks.append(StreamSink("stdout", fmt, Priority.parse(so["min_priority"])))
    fo = outs["file"]
    if fo["enabled"]:
        sinks.append(FileSink("file", fo["path"], as_json if fo.get("json", True) else fmt,
                              Priority.parse(fo["min_priority"])))
    wh = outs["webhook"]
    if wh["enabled"]:
        sinks.append(WebhookSink("webhook", wh["url"], as_json,
                                 min_priority=Priority.parse(wh["min_priority"]),
                                 retries=wh["retries"], timeout=wh["timeout"],
                                 queue_size=wh["queue_size"], headers=wh.get("headers") or {}))
    return sinks
