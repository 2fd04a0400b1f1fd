"""Built-in outputs: Falco's text and JSON formats on stdout, a file, and an HTTP webhook.

They are registered as the built-in plugin ``outputs`` (:mod:`falconet.outputs.builtin`) through the
same ``falconet_alert_sinks`` hook a third-party output uses.
"""
