"""Falconet OpenTelemetry output: alerts as OTLP log records and process-tree spans.

Configured by ``plugins.otel`` in falconet.yaml and the standard ``OTEL_EXPORTER_OTLP_*`` variables
(see ``falconet_otel.config``). The hooks are in ``falconet_otel.plugin``; the span model is in
``docs/otel.md`` of the Falconet repository.
"""

__version__ = "0.1.0"
