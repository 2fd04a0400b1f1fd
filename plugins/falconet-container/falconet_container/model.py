"""What the plugin knows about one container (immutable once published to the hot loop)."""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass, field, fields
from typing import Any

#: ``ContainerInfo.status`` values
PENDING, RESOLVED, FAILED = "pending", "resolved", "failed"


@dataclass(frozen=True, slots=True)
class Mount:
    """One mount of a container, as Falco's container plugin keeps it (``container_mount_info``).

    ``mode`` and ``propagation`` are whatever the runtime reports, possibly empty: docker and
    podman give their inspect ``Mode`` (``ro``, ``z``, often empty for binds) and
    ``Propagation`` (``rprivate``); for an OCI spec see :func:`mounts_from_spec`.
    """

    source: str
    dest: str
    mode: str = ""
    rdwr: bool = True
    propagation: str = ""

    def to_string(self) -> str:
        """``<source>:<dest>:<mode>:<rdrw>:<propagation>`` (``container_mount_info::to_string``)."""
        return (f"{self.source}:{self.dest}:{self.mode}:{'true' if self.rdwr else 'false'}:"
                f"{self.propagation}")

    @classmethod
    def from_dict(cls, d: Any) -> Mount:
        if not isinstance(d, dict) or not isinstance(d.get("source"), str) \
                or not isinstance(d.get("dest"), str):
            raise ValueError("container mount record without a source and dest")
        return cls(d["source"], d["dest"], str(d.get("mode") or ""), bool(d.get("rdwr", True)),
                   str(d.get("propagation") or ""))


def mounts_from_docker(items: Any) -> tuple[Mount, ...]:
    """Docker (and ``podman inspect``) ``Mounts``: Source, Destination, Mode, RW, Propagation
    taken as they are, as the container plugin's docker and podman engines do."""
    out = []
    for m in items if isinstance(items, list) else ():
        if not isinstance(m, dict):
            continue
        out.append(Mount(str(m.get("Source") or ""), str(m.get("Destination") or ""),
                         str(m.get("Mode") or ""), bool(m.get("RW")),
                         str(m.get("Propagation") or "")))
    return tuple(out)


def mounts_from_spec(spec: dict[str, Any] | None) -> tuple[Mount, ...] | None:
    """An OCI ``config.json``'s ``mounts`` the way the container plugin's containerd engine
    reads them (falcosecurity/plugins, go-worker/pkg/container/containerd.go), surprising as
    it is: every mount of the spec (``/proc``, ``/dev``, ... too, not only the user's); ``mode``
    is the value of a ``mode=`` option (``mode=755`` of a tmpfs), else empty, not ``ro``/``rw``;
    ``rdwr`` is false only with a ``ro`` option; ``propagation`` is the spec's
    ``linux.rootfsPropagation`` for every mount, not the mount's own ``rprivate``/``rshared``
    option. ``None`` without a spec (unknown)."""
    if not spec:
        return None
    linux = spec.get("linux")
    prop = str((linux.get("rootfsPropagation") if isinstance(linux, dict) else None) or "")
    out = []
    for m in spec.get("mounts") or ():
        if not isinstance(m, dict):
            continue
        ro, mode = False, ""
        for opt in m.get("options") or ():
            if opt == "ro":
                ro = True
            elif isinstance(opt, str) and opt.startswith("mode="):
                mode = opt[5:]
        out.append(Mount(str(m.get("source") or ""), str(m.get("destination") or ""), mode,
                         not ro, prop))
    return tuple(out)


@dataclass(slots=True)
class ContainerInfo:
    """Metadata of one container. ``None`` means unknown (not looked up yet, or the runtime did
    not say); the field extractors return it as a missing value.

    The hot loop never mutates a published object: the lookup worker builds a new one and the
    enricher swaps it in, so readers never see a half-filled entry.
    """

    full_id: str
    type: str | None = None                 # docker, containerd, cri-o, podman, runc
    name: str | None = None
    image: str | None = None                # as the runtime reports it (busybox:latest)
    image_repository: str | None = None
    image_tag: str | None = None
    image_digest: str | None = None         # registry digest (sha256:...) when known
    image_id: str | None = None             # local image id, 12 hex chars
    privileged: bool | None = None
    start_ts: int | None = None             # ns since the epoch
    labels: dict[str, str] = field(default_factory=dict)
    k8s_pod_name: str | None = None
    k8s_ns_name: str | None = None
    k8s_pod_uid: str | None = None
    k8s_container_name: str | None = None
    k8s_pod_sandbox_id: str | None = None
    k8s_pod_labels: dict[str, str] = field(default_factory=dict)   # from the pod sandbox
    #: in the runtime's order (container.mount[0] is the first); None: the runtime did not say
    mounts: tuple[Mount, ...] | None = None
    status: str = PENDING

    @property
    def id(self) -> str:
        return self.full_id[:12]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (capture records)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ContainerInfo:
        """Inverse of :meth:`to_dict`; unknown keys are ignored, ``full_id`` is required."""
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if not isinstance(kw.get("full_id"), str):
            raise ValueError("container record without a full_id")
        for key in ("labels", "k8s_pod_labels"):
            kw[key] = {str(k): str(v) for k, v in (kw.get(key) or {}).items()}
        mounts = kw.get("mounts")
        if mounts is not None:            # absent from captures older than the mount fields
            if not isinstance(mounts, (list, tuple)):
                raise ValueError("container record with mounts that are not a list")
            kw["mounts"] = tuple(Mount.from_dict(m) for m in mounts)
        return cls(**kw)


def split_image(ref: str | None) -> tuple[str | None, str | None, str | None]:
    """``(repository, tag, digest)`` of an image reference as written.

    ``busybox`` → (busybox, None, None); ``docker.io/library/nginx:1.25@sha256:ab..`` →
    (docker.io/library/nginx, 1.25, sha256:ab..); ``localhost:5000/app`` keeps the port in the
    repository. A bare image id (``sha256:...``) has no repository.
    """
    if not ref:
        return None, None, None
    digest = None
    if "@" in ref:
        ref, _, digest = ref.partition("@")
    if ref.startswith("sha256:"):
        return None, None, digest or ref
    tag = None
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        ref, tag = ref[:colon], ref[colon + 1:]
    return ref or None, tag, digest


def parse_rfc3339_ns(text: str | None) -> int | None:
    """Nanoseconds since the epoch from an RFC 3339 time with up to 9 fraction digits (what
    Go runtimes write: ``2026-11-28T18:20:20.196910761Z``). ``None`` for zero/invalid times."""
    if not text or text.startswith("0001-01-01"):
        return None
    try:
        main, frac, tz = text, "", ""
        if text.endswith("Z"):
            main, tz = text[:-1], "+00:00"
        else:
            for sep in ("+", "-"):
                i = text.rfind(sep)
                if i > 10:
                    main, tz = text[:i], text[i:]
                    break
        if "." in main:
            main, frac = main.split(".", 1)
        secs = _dt.datetime.fromisoformat(main + (tz or "+00:00")).timestamp()
        ns = int(frac[:9].ljust(9, "0")) if frac else 0
        return int(secs) * 1_000_000_000 + ns
    except ValueError:
        return None
