"""``container.*`` and ``k8s.*`` field declarations (names and meanings follow Falco's container
plugin). Extractors are bound once at rule-load time; per event they read the thread's container
id and one dict entry."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from falconet.fields import ArgKind, FieldDef, FieldType

from falconet_container import PLUGIN_NAME
from falconet_container.enricher import ContainerEnricher
from falconet_container.model import Mount

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


#: container.mount.<part>[...]: (attribute of Mount or None for the whole mount, matched on
#: the dest instead of the source when the argument is a path, description)
_MOUNT_FIELDS: tuple[tuple[str, str | None, bool, str], ...] = (
    ("container.mount", None, False,
     "One mount as <source>:<dest>:<mode>:<rdrw>:<propagation>, by index (container.mount[0]) "
     "or by source path (container.mount[/usr/local]): the first mount whose source the "
     "argument, a regular expression, matches. Missing when no mount matches."),
    ("container.mount.source", "source", True,
     "A mount's source, by index (container.mount.source[0]) or by destination path "
     "(container.mount.source[/host/lib/modules], a regular expression)."),
    ("container.mount.dest", "dest", False,
     "A mount's destination, by index (container.mount.dest[0]) or by source path "
     "(container.mount.dest[/lib/modules], a regular expression)."),
    ("container.mount.mode", "mode", False,
     "A mount's mode (docker/podman inspect Mode; an OCI mode= option), by index or by source "
     "path (a regular expression)."),
    ("container.mount.rdwr", "rdwr", False,
     "Whether a mount is read-write: the string true or false, by index "
     "(container.mount.rdwr[0]) or by source path (container.mount.rdwr[/data], a regular "
     "expression)."),
    ("container.mount.propagation", "propagation", False,
     "A mount's propagation (docker/podman inspect Propagation; an OCI spec's "
     "rootfsPropagation), by index or by source path (a regular expression)."),
)


def mount_selector(field: str, arg: str | None,
                   by_dest: bool) -> Callable[[tuple[Mount, ...]], Mount | None]:
    """The mount a ``container.mount*[arg]`` names, bound at load time.

    Upstream semantics (falcosecurity/plugins, plugins/container/src/caps/extract/extract.cpp
    and container_info.cpp, container plugin 0.7.1 as Falco 0.44 loads it):
    - the argument is an index when libsinsp reads it as one: digits only, no leading zero
      (``0``, ``12``; ``01`` and ``-1`` are keys), as its plugin field-argument parser does;
    - a key is a **regular expression searched** (unanchored, multi-line, RE-flex) in each
      mount's source (its destination for ``container.mount.source``), the first match wins.
      The field descriptions say "a glob", and libsinsp before 0.41 used fnmatch, but the
      plugin compiles a regex: ``[/data]`` also matches ``/var/data2``, ``[/usr/local/*]``
      matches any source containing ``/usr/local``. Anchor with ``^...$`` to be exact.
    An argument that is not a valid regular expression is refused at load time (Falco loads it;
    the plugin compiles the pattern only when it extracts)."""
    if not arg:
        raise ValueError(f"{field} needs a mount index or path: {field}[0] or {field}[/data]")
    if arg.isdigit() and (arg == "0" or arg[0] != "0"):
        idx = int(arg)

        def by_index(mounts: tuple[Mount, ...]) -> Mount | None:
            return mounts[idx] if idx < len(mounts) else None
        return by_index
    try:
        pattern = re.compile(arg, re.MULTILINE)
    except re.error as e:
        raise ValueError(f"{field}[{arg}]: the argument is a regular expression: {e}") from None
    search = pattern.search

    def by_path(mounts: tuple[Mount, ...]) -> Mount | None:
        for m in mounts:
            if search(m.dest if by_dest else m.source):
                return m
        return None
    return by_path


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

    def mounts_extractor(_arg: str | None) -> Extract:
        def extract(evt: Any) -> str | None:
            f = full_id(evt)
            if not f:
                # the plugin's host entry has no mounts: "" (an unknown id: missing)
                return None if f is None else ""
            info = table.get(f)
            if info is None or info.mounts is None:
                return None
            # ',' although the field's description says space-separated: extract.cpp joins
            # with ","
            return ",".join(m.to_string() for m in info.mounts)
        return extract

    def mount_extractor(field: str, attr: str | None, by_dest: bool) -> Callable[[str | None], Extract]:
        def make(arg: str | None) -> Extract:
            select = mount_selector(field, arg, by_dest)
            last: list[Any] = [None, None]       # (ContainerInfo, value): infos are immutable

            def extract(evt: Any) -> str | None:
                info = info_of(evt)
                if info is None or info.mounts is None:
                    return None
                if info is last[0]:
                    return last[1]
                m = select(info.mounts)
                # no match is a missing value, though the description of container.mount
                # promises "none": the plugin sets no value then (extract.cpp)
                if m is None:
                    v = None
                elif attr is None:
                    v = m.to_string()
                elif attr == "rdwr":
                    v = "true" if m.rdwr else "false"
                else:
                    v = getattr(m, attr)
                last[0], last[1] = info, v
                return v
            return extract
        return make

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
        FieldDef("container.mounts", FieldType.STRING,
                 "The container's mounts, comma-separated, each "
                 "<source>:<dest>:<mode>:<rdrw>:<propagation> (empty for host processes).",
                 mounts_extractor, provider=p),
    ]
    for name, attr, by_dest, desc in _MOUNT_FIELDS:
        defs.append(FieldDef(name, FieldType.STRING, desc, mount_extractor(name, attr, by_dest),
                             arg=ArgKind.REQUIRED, provider=p))
    for name, ftype, attr, host_value, suggested, desc in _ATTR_FIELDS:
        make = attr_extractor(attr, host_value, name == "k8s.pod.sandbox_id")
        if name in _API_FALLBACK and enricher.k8s_api:
            make = with_api_fallback(make, _API_FALLBACK[name])   # bound only when it can help
        defs.append(FieldDef(name, ftype, desc, make, provider=p, suggested=suggested))
    return defs
