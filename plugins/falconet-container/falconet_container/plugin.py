"""The plugin's hooks (entry point ``container`` in group ``falconet``).

Config (``falconet.yaml``)::

    plugins:
      container:
        lookups: true                 # false: container.id only, never ask a runtime
        docker_socket: /var/run/docker.sock
        containerd_socket: /run/containerd/containerd.sock
        runc_roots: [/run/runc, /run/containerd/runc, /run/docker/runtime-runc]
        ctr_binary: ctr
        podman_binary: podman
        podman_inspect: true          # fall back to `podman inspect` when storage files are absent
        lookup_timeout: 2.0           # seconds per runtime call
        use_cgroup_id: auto           # auto | true | false
        k8s_api:                      # pod/namespace labels from the Kubernetes API (extra [k8s])
          enabled: false
          kubeconfig: null            # null: in-cluster service account
          node_name: null             # null: $NODE_NAME (downward API), else the host name
          namespaces: true            # also watch namespaces (k8s.ns.label[...])
          max_pods: 10000
          request_timeout: 10.0
          watch_timeout: 300
          backoff_initial: 0.5
          backoff_max: 30.0
"""

from __future__ import annotations

from typing import Any

from falconet import plugin_config as c
from falconet.api import ConfigSchema, PluginConfigError, Setting, hookimpl
from falconet.plugin_config import check_or_raise

from falconet_container import PLUGIN_NAME, __version__
from falconet_container.cgroup_ids import CgroupIds
from falconet_container.enricher import ContainerEnricher, cgroup_ids_usable
from falconet_container.fields import field_defs
from falconet_container.k8s_api import SCHEMA as K8S_SCHEMA
from falconet_container.k8s_api import K8sApiConfig, K8sConfigError, K8sWatcher, parse_config
from falconet_container.resolver import MetadataResolver, ResolverConfig
from falconet_container.worker import LATENCY_BUCKETS, LookupWorker


def _schema() -> ConfigSchema:
    d = ResolverConfig()
    return ConfigSchema({
        "lookups": Setting(c.boolean(), True),
        "docker_socket": Setting(c.string(), d.docker_socket),
        "containerd_socket": Setting(c.string(), d.containerd_socket),
        "runc_roots": Setting(c.string_list(), list(d.runc_roots)),
        "ctr_binary": Setting(c.string(), d.ctr_binary),
        "podman_binary": Setting(c.string(), d.podman_binary),
        "podman_inspect": Setting(c.boolean(), d.podman_inspect),
        "lookup_timeout": Setting(c.number(0, 60, exclusive_minimum=True), d.timeout),
        "use_cgroup_id": Setting(c.one_of("auto", True, False), "auto"),
        "k8s_api": K8S_SCHEMA,
    })


#: ``plugins.container``: every key, its default and its check (documented in the module
#: docstring and docs/containers.md)
SCHEMA = _schema()


class ContainerPlugin:
    """One engine's container plugin: its state and its hooks (the host makes one instance per
    engine)."""

    def __init__(self) -> None:
        self.engine: Any = None
        self.cfg = ResolverConfig()
        self.lookups = True
        self.use_cgroup_id: bool | None = None
        self.enricher = ContainerEnricher()
        self.worker: LookupWorker | None = None
        self.k8s_cfg = K8sApiConfig()
        self.k8s_watcher: K8sWatcher | None = None

    def configure(self, config: dict[str, Any], engine: Any) -> None:
        """Apply ``plugins.container`` (checked against :data:`SCHEMA` here when called by
        hand; the engine passes values it already checked, and checking twice is harmless)."""
        config = check_or_raise(SCHEMA, PLUGIN_NAME, config)
        cfg = ResolverConfig(docker_socket=config["docker_socket"],
                             containerd_socket=config["containerd_socket"],
                             runc_roots=list(config["runc_roots"]), ctr_binary=config["ctr_binary"],
                             podman_binary=config["podman_binary"],
                             podman_inspect=config["podman_inspect"],
                             timeout=config["lookup_timeout"])
        self.lookups = config["lookups"]
        ucg = config["use_cgroup_id"]
        self.use_cgroup_id = None if ucg == "auto" else ucg
        try:
            self.k8s_cfg = parse_config(config["k8s_api"])
        except K8sConfigError as e:
            raise PluginConfigError(str(e)) from e
        self.cfg = cfg
        self.engine = engine
        self._build(engine)

    def _build(self, engine: Any) -> None:
        source = (getattr(engine, "extras", None) or {}).get("falconet.source")
        replay = source == "replay"
        use_cg = self.use_cgroup_id if self.use_cgroup_id is not None else cgroup_ids_usable()
        enricher = ContainerEnricher(metrics=getattr(engine, "metrics", None),
                                     emit_state=getattr(engine, "emit_state", None),
                                     state=getattr(engine, "state", None), use_cgroup_id=use_cg,
                                     cgroup_path=CgroupIds().path if use_cg and not replay
                                     else None)
        enricher.replay = replay
        enricher.k8s.max_pods = self.k8s_cfg.max_pods
        enricher.k8s_api = self.k8s_cfg.enabled or replay
        if self.k8s_cfg.enabled and not replay:
            self.k8s_watcher = K8sWatcher(self.k8s_cfg)
            enricher.k8s_updates = self.k8s_watcher.updates
        if self.lookups and not replay:
            self.worker = LookupWorker(MetadataResolver(self.cfg),
                                       wanted=enricher.containers.__contains__)
            enricher.worker = self.worker
            enricher._done = self.worker.done
        self.enricher = enricher

    def start(self, engine: Any) -> None:
        m = getattr(engine, "metrics", None)
        if m is not None:
            prev = m.gauges.get("state_table_entries")
            table = self.enricher.containers
            k8s = self.enricher.k8s if self.k8s_watcher is not None else None

            def sizes() -> dict[str, float]:
                out = dict(prev()) if prev is not None else {}
                out["containers"] = float(len(table))
                if k8s is not None:
                    out["k8s_pods"] = float(len(k8s.pods))
                    out["k8s_namespaces"] = float(len(k8s.ns_labels))
                return out
            m.gauges["state_table_entries"] = sizes
        if self.worker is not None:
            self.worker.start()
        if self.k8s_watcher is not None:
            self.k8s_watcher.start()

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        if self.k8s_watcher is not None:
            self.k8s_watcher.stop()

    # ------------------------------------------------------------------------------ hooks
    @hookimpl
    def falconet_config_schema(self) -> ConfigSchema:
        return SCHEMA

    @hookimpl
    def falconet_configure(self, config: dict[str, Any], engine: Any) -> None:
        self.configure(config, engine)

    @hookimpl
    def falconet_fields(self, engine: Any) -> list[Any]:
        return field_defs(self.enricher)

    @hookimpl
    def falconet_event_parsers(self, engine: Any) -> list[Any]:
        return [self.enricher.parse]

    @hookimpl
    def falconet_plugin_versions(self, engine: Any) -> dict[str, str]:
        return {"container": __version__}

    @hookimpl
    def falconet_start(self, engine: Any) -> None:
        self.start(engine)

    @hookimpl
    def falconet_stop(self, engine: Any) -> None:
        self.stop()

    @hookimpl
    def falconet_capture_state(self, engine: Any) -> Any:
        return self.enricher.capture_state()

    @hookimpl
    def falconet_restore_state(self, plugin: str, data: Any, engine: Any) -> None:
        if plugin == PLUGIN_NAME:
            self.enricher.restore(data)

    @hookimpl
    def falconet_metrics(self, registry: Any, engine: Any) -> None:
        registry.register(_LatencyCollector(self))
        registry.register(_K8sApiCollector(self))


#: the host makes one instance of this class per engine
FALCONET_PLUGIN = ContainerPlugin


class _LatencyCollector:
    """``falconet_enrichment_lookup_seconds{plugin="container"}``, built at scrape time from the
    worker's plain-integer histogram (nothing to do per lookup but a few additions)."""

    def __init__(self, plugin: ContainerPlugin) -> None:
        self.plugin = plugin

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Any:
        from prometheus_client.core import HistogramMetricFamily  # noqa: PLC0415

        fam = HistogramMetricFamily("falconet_enrichment_lookup_seconds",
                                    "Time of one enrichment metadata lookup", labels=["plugin"])
        w = self.plugin.worker
        if w is not None:
            h = w.latency
            acc, buckets = 0, []
            for b, c in zip(LATENCY_BUCKETS, h.counts, strict=False):
                acc += c
                buckets.append((repr(b), acc))
            buckets.append(("+Inf", h.n))
            fam.add_metric([PLUGIN_NAME], buckets, h.sum)
        yield fam


class _K8sApiCollector:
    """The Kubernetes API watcher's counters (only with ``k8s_api.enabled``), read at scrape
    time from its plain-integer dicts."""

    def __init__(self, plugin: ContainerPlugin) -> None:
        self.plugin = plugin

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Any:
        from prometheus_client.core import (  # noqa: PLC0415
            CounterMetricFamily,
            GaugeMetricFamily,
        )

        w = self.plugin.k8s_watcher
        if w is None:
            return
        req = CounterMetricFamily("falconet_k8s_api_requests",
                                  "Kubernetes API list/watch calls of the container plugin, by result",
                                  labels=["resource", "verb", "result"])
        for (res, verb, result), n in sorted(dict(w.requests).items()):
            req.add_metric([res, verb, result], n)
        yield req
        ev = CounterMetricFamily("falconet_k8s_api_watch_events",
                                 "Kubernetes API watch events received, by type",
                                 labels=["resource", "type"])
        for (res, typ), n in sorted(dict(w.events).items()):
            ev.add_metric([res, typ], n)
        yield ev
        up = GaugeMetricFamily("falconet_k8s_api_synced",
                               "1 while the last list/watch of the resource succeeded",
                               labels=["resource"])
        for res, v in sorted(dict(w.synced).items()):
            up.add_metric([res], v)
        yield up
