"""The hooks as the engine calls them: configuration validation, versions, fields, capture."""

import pytest
from falconet.api import EngineContext, PluginConfigError
from falconet.fields import FieldRegistry
from falconet.metrics import EngineMetrics
from falconet.plugin_config import configure_by_hand
from falconet_container import plugin


def ctx(**extras):
    c = EngineContext(hostname="t", fields=FieldRegistry(), metrics=EngineMetrics())
    c.extras.update(extras)
    return c


@pytest.mark.parametrize("config,message", [
    ({"docker_sock": "/x"}, "plugins.container.docker_sock: unknown key 'docker_sock'"),
    ({"lookup_timeout": 0}, "plugins.container.lookup_timeout: expected a number in (0, 60]"),
    ({"lookup_timeout": "2"}, "plugins.container.lookup_timeout: expected a number in (0, 60]"),
    ({"runc_roots": "/run/runc"}, "plugins.container.runc_roots: expected a list of strings"),
    ({"lookups": "yes"}, "plugins.container.lookups: expected true or false"),
    ({"use_cgroup_id": "maybe"}, "plugins.container.use_cgroup_id: expected one of auto, true, false"),
    ({"docker_socket": ""}, "plugins.container.docker_socket: expected a non-empty string"),
])
def test_bad_config_is_rejected_with_the_key(config, message):
    with pytest.raises(PluginConfigError) as ei:
        cp = plugin.ContainerPlugin()
        configure_by_hand(cp, "container", config=config, engine=ctx())
    assert message in str(ei.value)


def test_hooks():
    c = ctx()
    cp = plugin.ContainerPlugin()
    configure_by_hand(cp, "container", config={"required": True, "lookup_timeout": 0.5}, engine=c)
    assert cp.falconet_plugin_versions(engine=c) == {"container": "0.6.0"}
    names = {f.name for f in cp.falconet_fields(engine=c)}
    assert {"container.id", "container.name", "container.image.repository", "k8s.pod.name",
            "k8s.ns.name", "container.privileged", "container.start_ts"} <= names
    [parse] = cp.falconet_event_parsers(engine=c)
    assert callable(parse)
    cp.falconet_start(engine=c)
    try:
        sizes = c.metrics.gauges["state_table_entries"]()
        assert sizes["containers"] == 0.0
        assert cp.falconet_capture_state(engine=c) == {"containers": [], "pids": {}}
    finally:
        cp.falconet_stop(engine=c)


def test_replay_source_means_no_lookups():
    c = ctx(**{"falconet.source": "replay"})
    cp = plugin.ContainerPlugin()
    configure_by_hand(cp, "container", config={}, engine=c)
    assert cp.worker is None and cp.enricher.replay
    cp.falconet_restore_state(plugin="core-state", data={"x": 1}, engine=c)   # not ours
    cp.falconet_restore_state(plugin="container", data={"pid": 5, "container_id": "a" * 64},
                                  engine=c)
    assert cp.enricher.pid_cid[5] == "a" * 64


def test_latency_histogram_is_exposed():
    from prometheus_client import CollectorRegistry, generate_latest
    c = ctx()
    cp = plugin.ContainerPlugin()
    configure_by_hand(cp, "container", config={}, engine=c)
    cp.worker.latency.observe(0.003)
    reg = CollectorRegistry()
    cp.falconet_metrics(registry=reg, engine=c)
    text = generate_latest(reg).decode()
    assert 'falconet_enrichment_lookup_seconds_bucket{le="0.005",plugin="container"} 1.0' in text
    assert 'falconet_enrichment_lookup_seconds_count{plugin="container"} 1.0' in text
