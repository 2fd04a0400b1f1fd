"""Falconet's response plugin: policies from ``falconet.yaml: responses:`` run actions on the
targets of matching alerts, off the hot path, within a safety model (docs/response.md)."""

__version__ = "0.1.0"
