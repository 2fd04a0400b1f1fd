"""Endpoint resolution: config section vs OTEL_EXPORTER_OTLP_* variables."""

from __future__ import annotations

import pytest
from falconet.api import PluginConfigError, Priority
from falconet_otel.config import parse_headers, resolve_settings


def test_no_endpoint_means_off_with_one_line_reason():
    s = resolve_settings({}, env={})
    assert not s.enabled
    assert "OpenTelemetry output is off" in s.describe()
    assert "\n" not in s.describe()


def test_general_http_endpoint_gets_signal_paths():
    s = resolve_settings({}, env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"})
    assert s.targets["logs"].endpoint == "http://collector:4318/v1/logs"
    assert s.targets["traces"].endpoint == "http://collector:4318/v1/traces"
    assert s.targets["logs"].protocol == "http/protobuf"
    assert s.targets["logs"].timeout == 2.0


def test_signal_specific_endpoint_used_as_is_and_only_that_signal():
    s = resolve_settings({}, env={"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://loki:3100/otlp/v1/logs"})
    assert set(s.targets) == {"logs"}
    assert s.targets["logs"].endpoint == "http://loki:3100/otlp/v1/logs"


def test_grpc_endpoint_and_insecure_from_scheme():
    s = resolve_settings({}, env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4317",
                                  "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    t = s.targets["traces"]
    assert (t.endpoint, t.protocol, t.insecure) == ("otel:4317", "grpc", True)
    s = resolve_settings({"endpoint": "https://otel:4317", "protocol": "grpc"}, env={})
    assert s.targets["logs"].insecure is False


def test_config_section_wins_over_environment():
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4318", "OTEL_EXPORTER_OTLP_HEADERS": "a=1",
           "OTEL_EXPORTER_OTLP_TIMEOUT": "500"}
    s = resolve_settings({"endpoint": "http://cfg:4318", "headers": {"X-Token": "t"}, "timeout": 1,
                          "traces": False, "min_priority": "warning"}, env=env)
    assert set(s.targets) == {"logs"}
    t = s.targets["logs"]
    assert t.endpoint == "http://cfg:4318/v1/logs" and t.headers == {"x-token": "t"} and t.timeout == 1
    assert s.min_priority is Priority.WARNING
    t = resolve_settings({}, env=env).targets["logs"]
    assert t.headers == {"a": "1"} and t.timeout == 0.5      # spec unit: milliseconds


def test_headers_are_url_decoded():
    assert parse_headers("Authorization=Basic%20abc, x-tenant = t1") == {
        "authorization": "Basic abc", "x-tenant": "t1"}


@pytest.mark.parametrize("section, msg", [
    ({"endpoint": "http://x:1", "protocol": "http/json"}, "protocol"),
    ({"endpoint": "x:4318"}, "http:// or https://"),
    ({"endpoint": "x", "protocol": "grpc"}, "host:port"),
    ({"endpoint": "http://x:1", "timeout": "soon"}, "timeout"),
    ({"endpointt": "http://x:1"}, "unknown key"),
    ({"endpoint": "http://x:1", "min_priority": "loud"}, "min_priority"),
    ({"endpoint": "http://x:1", "headers": "novalue"}, "key=value"),
])
def test_bad_config_is_a_clear_error(section, msg):
    with pytest.raises(PluginConfigError, match=msg):
        resolve_settings(section, env={})
