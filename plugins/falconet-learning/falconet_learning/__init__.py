"""Falconet learning mode: per-workload behaviour profiles and the ``profile.*`` fields."""

PLUGIN_NAME = "learning"
__version__ = "0.1.0"
