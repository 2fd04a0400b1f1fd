"""``container.*`` and ``k8s.*`` field declarations (names and meanings follow Falco's container
plugin). Extractors are bound once at rule-load time; per event they read the thread's container
id and one dict entry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from falconet.fields import ArgKind, FieldDef, FieldType

from falconet_container import PLUGIN_NAME
from falconet_container.enricher import ContainerEnricher

Extract = Callable[[Any], Any]

#: (field, type, attribute of ContainerInfo, value for host processes, suggested, description)
_ATTR_FIELDS: tuple[tuple[str, FieldType, str, Any, bool, str], ...] = (
    ("container.name", FieldType.STRING, "name", "host", True,
     "The container name (host for host processes). Missing (<NA>) until the runtime lookup finishes."),
    ("container.image", FieldType.STRING, "image", None, False,
     "The container image as the runtime reports it (e.g. busybox:latest)."),
    ("container.image.repository", FieldType.STRING, "image_repository", None, True,
     "The container image repository (e.g. docker.io/library/busybox)."),
    ("container.image.tag", FieldType.STRING, "image_tag", None, True,
     "The container image tag (e.g. latest)."),
    ("container.image.digest", FieldType.STRING, "image_digest", None, False,
     "The container image registry digest (sha256:...), when the runtime knows it."),
    ("container.image.id", FieldType.STRING, "image_id", None, False,
     "The container image id, 12 hex characters."),
    ("container.type", FieldType.STRING, "type", "host", False,
     "The container runtime: docker, containerd, cri-o, podman or runc (host for host processes)."),
    ("container.privileged", FieldType.BOOL, "privileged", None, False,
     "true for containers running privileged, false otherwise."),
    ("container.start_ts", FieldType.ABSTIME, "start_ts", None, False,
     "Container start as epoch timestamp in nanoseconds (from the runtime)."),
    ("k8s.pod.name", FieldType.STRING, "k8s_pod_name", None, True,
     "The Kubernetes pod name (from CRI annotations/labels; the Kubernetes API's while they are "
     "missing, with k8s_api)."),
    ("k8s.ns.name", FieldType.STRING, "k8s_ns_name", None, True,
     "The Kubernetes namespace name (from CRI annotations/labels; the Kubernetes API's while "
     "they are missing, with k8s_api)."),
    ("k8s.pod.uid", FieldType.STRING, "k8s_pod_uid", None, False,
     "The Kubernetes pod UID (from CRI annotations/labels, or the pod<uid> cgroup path)."),
    ("k8s.pod.id", FieldType.STRING, "k8s_pod_uid", None, False,
     "Alias of k8s.pod.uid (kept for older rules)."),
    ("k8s.container.name", FieldType.STRING, "k8s_container_name", None, False,
     "The container's name in its Kubernetes pod spec."),
    ("k8s.pod.sandbox_id", FieldType.STRING, "k8s_pod_sandbox_id", None, False,
     "The pod sandbox id, 12 hex characters."),
)


#: CRI-derived fields the API can fill in while the runtime lookup is pending: PodMeta attribute
_API_FALLBACK = {"k8s.pod.name": "name", "k8s.ns.name": "namespace"}


def field_defs(enricher: ContainerEnricher) -> list[FieldDef]:
    full_id = enricher.full_id
    table = enricher.containers

    def id_extractor(_arg: str | None) -> Extract:
        def extract(evt: Any) -> str | None:
            f = full_id(evt)
            if f is None:
                return None
            return f[:12] if f else "host"
        return extract

    def full_id_extractor(_arg: str | None) -> Extract:
        def extract(evt: Any) -> str | None:
            f = full_id(evt)
            if f is None:
                return None
            return f or "host"
        return extract

    pid_cid = enricher.pid_cid

    def info_of(evt: Any) -> Any:
        """The event's ContainerInfo, or None (host process, unknown, or not looked up yet)."""
        f = full_id(evt)
        return table.get(f) if f else None

    def attr_extractor(attr: str, host_value: Any, short: bool) -> Callable[[str | None], Extract]:
        def make(_arg: str | None) -> Extract:
            # inlined full_id(): this runs for every suggested field of every alert
            def extract(evt: Any, _get=table.get, _attr=attr, _host=host_value) -> Any:
                t = evt.thread
                f = t.container_id if t is not None else pid_cid.get(evt.pid)
                if not f:
                    return _host if f == "" else None
                info = _get(f)
                if info is None:
                    return None
                return getattr(info, _attr)
            if not short:
                return extract

            def extract_short(evt: Any) -> Any:
                v = extract(evt)
                return v[:12] if v else v
            return extract_short
        return make

    def label_extractor(arg: str | None) -> Extract:
        if not arg:
            raise ValueError("container.label needs a label name: container.label[app]")
        key = arg

        def extract(evt: Any) -> str | None:
            info = info_of(evt)
            return info.labels.get(key) if info is not None else None
        return extract

    k8s = enricher.k8s           # the object is fixed; its dicts are replaced on a relist

    def pod_meta_of(info: Any) -> Any:
        """The API's PodMeta of a container's pod (by the uid from CRI or the cgroup path)."""
        uid = info.k8s_pod_uid
        return k8s.pods.get(uid) if uid else None

    def pod_label_extractor(arg: str | None) -> Extract:
        if not arg:
            raise ValueError("k8s.pod.label needs a label name: k8s.pod.label[app]")
        key = arg

        def extract(evt: Any) -> str | None:
            info = info_of(evt)
            if info is None:
                return None
            uid = info.k8s_pod_uid
            if uid:
                pm = k8s.pods.get(uid)       # the API's labels win over the sandbox's copy
                if pm is not None:
                    v = pm.labels.get(key)
                    if v is not None:
                        return v
            return info.k8s_pod_labels.get(key)
        return extract

    def pod_labels_extractor(_arg: str | None) -> Extract:
        def extract(evt: Any) -> str | None:
            info = info_of(evt)
            if info is None:
                return None
            pm = pod_meta_of(info)
            labels = {**info.k8s_pod_labels, **pm.labels} if pm is not None else info.k8s_pod_labels
            if not labels:
                return None if pm is None and info.k8s_pod_uid is None else ""
            return ",".join(f"{k}:{v}" for k, v in sorted(labels.items()))
        return extract

    def pod_ip_extractor(_arg: str | None) -> Extract:
        def extract(evt: Any) -> str | None:
            info = info_of(evt)
            pm = pod_meta_of(info) if info is not None else None
            return pm.ip if pm is not None else None
        return extract

    def ns_labels_of(evt: Any) -> dict[str, str] | None:
        info = info_of(evt)
        if info is None:
            return None
        ns = info.k8s_ns_name
        if ns is None:
            pm = pod_meta_of(info)
            ns = pm.namespace if pm is not None else None
        return k8s.ns_labels.get(ns) if ns else None

    def ns_label_extractor(arg: str | None) -> Extract:
        if not arg:
            raise ValueError("k8s.ns.label needs a label name: k8s.ns.label[team]")
        key = arg

        def extract(evt: Any) -> str | None:
            labels = ns_labels_of(evt)
            return labels.get(key) if labels is not None else None
        return extract

    def ns_labels_extractor(_arg: str | None) -> Extract:
        def extract(evt: Any) -> str | None:
            labels = ns_labels_of(evt)
            if labels is None:
                return None
            return ",".join(f"{k}:{v}" for k, v in sorted(labels.items()))
        return extract

    def with_api_fallback(make: Callable[[str | None], Extract],
                          api_attr: str) -> Callable[[str | None], Extract]:
        """k8s.pod.name / k8s.ns.name from the API while the CRI lookup has not said (pending,
        failed, or a runtime that does not annotate), found by the cgroup path's pod uid."""
        def bind(arg: str | None) -> Extract:
            base = make(arg)

            def extract(evt: Any) -> Any:
                v = base(evt)
                if v is not None:
                    return v
                info = info_of(evt)
                pm = pod_meta_of(info) if info is not None else None
                return getattr(pm, api_attr) if pm is not None else None
            return extract
        return bind

    def duration_extractor(_arg: str | None) -> Extract:
        def extract(evt: Any) -> int | None:
            info = info_of(evt)
            if info is None or not info.start_ts:
                return None
            return evt.ts - info.start_ts
        return extract

    p = PLUGIN_NAME
    defs = [
        FieldDef("container.id", FieldType.STRING,
                 "The truncated container id (12 hex chars) from the process's cgroup; 'host' "
                 "for host processes. Always available, without waiting for the runtime.",
                 id_extractor, provider=p, suggested=True),
        FieldDef("container.full_id", FieldType.STRING,
                 "The full container id (64 hex chars); 'host' for host processes.",
                 full_id_extractor, provider=p),
        FieldDef("container.label", FieldType.STRING,
                 "A container label (docker/containerd/CRI-O labels): container.label[app] or "
                 "container.label.app.", label_extractor, arg=ArgKind.REQUIRED, dotted_arg=True,
                 provider=p),
        FieldDef("k8s.pod.label", FieldType.STRING,
                 "A Kubernetes pod label: from the Kubernetes API when k8s_api is on, else from "
                 "the pod sandbox (containerd CRI, CRI-O): k8s.pod.label[app] or k8s.pod.label.app.",
                 pod_label_extractor, arg=ArgKind.REQUIRED, dotted_arg=True, provider=p),
        FieldDef("k8s.pod.labels", FieldType.STRING,
                 "The pod's labels as comma-separated key:value pairs sorted by key "
                 "(app:web,tier:front): the sandbox's labels merged with the Kubernetes API's "
                 "(k8s_api), the API's winning.", pod_labels_extractor, provider=p),
        FieldDef("k8s.pod.ip", FieldType.STRING,
                 "The pod's IPv4 address, from the Kubernetes API (k8s_api; missing without it).",
                 pod_ip_extractor, provider=p),
        FieldDef("k8s.ns.label", FieldType.STRING,
                 "A label of the pod's namespace, from the Kubernetes API (k8s_api): "
                 "k8s.ns.label[team] or k8s.ns.label.team.", ns_label_extractor,
                 arg=ArgKind.REQUIRED, dotted_arg=True, provider=p),
        FieldDef("k8s.ns.labels", FieldType.STRING,
                 "The namespace's labels as comma-separated key:value pairs, from the Kubernetes "
                 "API (k8s_api).", ns_labels_extractor, provider=p),
        FieldDef("container.duration", FieldType.RELTIME,
                 "Nanoseconds since the container started.", duration_extractor, provider=p),
    ]
    for name, ftype, attr, host_value, suggested, desc in _ATTR_FIELDS:
        make = attr_extractor(attr, host_value, name == "k8s.pod.sandbox_id")
        if name in _API_FALLBACK and enricher.k8s_api:
            make = with_api_fallback(make, _API_FALLBACK[name])   # bound only when it can help
        defs.append(FieldDef(name, ftype, desc, make, provider=p, suggested=suggested))
    return defs
