"""Lookup outcomes other than success. Each maps to one ``result`` label of
``falconet_enrichment_lookups_total{plugin="container"}``."""


class LookupMiss(LookupError):
    """No runtime knows the container (it exited, or was never a runtime's)."""

    result = "miss"


class LookupTimeout(LookupError):
    """A runtime did not answer in time (a hung socket, a slow CLI)."""

    result = "timeout"


class LookupFailed(LookupError):
    """A runtime or state file gave something we cannot use (unreachable, malformed)."""

    result = "error"
