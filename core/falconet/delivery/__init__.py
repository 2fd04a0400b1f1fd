"""Alert delivery between the alert queues and the sinks: routing (``match:``), aggregation
(``aggregate:``), and the durable on-disk spool (``spool:``) that keeps alerts an output cannot
deliver until its receiver is back. See ``docs/outputs.md``."""


class PayloadRejected(Exception):  # noqa: N818 - the receiver's verdict, not a failure of ours
    """Raised by ``deliver``: payload ``index`` of the batch was refused for good (the ones
    before it were accepted)."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index
        self.reason = reason
