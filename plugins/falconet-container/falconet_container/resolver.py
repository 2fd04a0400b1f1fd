"""Turn a container id into :class:`ContainerInfo` by asking the runtimes. Runs in the lookup
worker thread only: it does file and socket I/O and may start ``ctr``/``podman`` subprocesses.

Order: the docker API when the cgroup says docker; otherwise the runc state file decides who owns
the container (containerd namespace dir → containerd, ``moby`` → docker, ``io.container.manager=
libpod`` → podman, CRI-O's annotations → cri-o, else plain runc), then that runtime's own store
fills in name, image and labels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from falconet_container import cgroup
from falconet_container.containerd_cli import ctr_info
from falconet_container.docker_api import DockerClient
from falconet_container.errors import LookupFailed, LookupMiss, LookupTimeout
from falconet_container.k8s import (
    CONTAINER_NAME_KEYS,
    CRIO_KEYS,
    IMAGE_KEYS,
    first,
    k8s_fields,
    pod_labels,
)
from falconet_container.model import (
    RESOLVED,
    ContainerInfo,
    mounts_from_docker,
    mounts_from_spec,
    parse_rfc3339_ns,
    split_image,
)
from falconet_container.ocistate import RuncState, find_state_file, load_state, spec_privileged
from falconet_container.podman_store import podman_inspect, read_storage, storage_root_from_bundle

DEFAULT_RUNC_ROOTS = ["/run/runc", "/run/containerd/runc", "/run/docker/runtime-runc"]


@dataclass
class ResolverConfig:
    """The ``plugins.container`` settings the resolver uses (see docs/containers.md)."""

    docker_socket: str = "/var/run/docker.sock"
    containerd_socket: str = "/run/containerd/containerd.sock"
    runc_roots: list[str] = field(default_factory=lambda: list(DEFAULT_RUNC_ROOTS))
    ctr_binary: str = "ctr"
    podman_binary: str = "podman"
    podman_inspect: bool = True
    timeout: float = 2.0


class MetadataResolver:
    def __init__(self, cfg: ResolverConfig) -> None:
        self.cfg = cfg
        self.docker = DockerClient(cfg.docker_socket, cfg.timeout)

    # ------------------------------------------------------------------ entry point
    def resolve(self, full_id: str, hint: str = "") -> ContainerInfo:
        """Metadata for ``full_id``. Raises :class:`LookupMiss`, :class:`LookupTimeout` or
        :class:`LookupFailed` when nothing usable was found; a partial answer (say, the runc
        state without the runtime's own store) is returned as a hit."""
        docker_err: LookupError | None = None
        if hint == cgroup.DOCKER:
            try:
                return self._docker(full_id)
            except LookupError as e:     # daemon down or hung: the runc state may still say a lot
                docker_err = e
        found = find_state_file(full_id, self.cfg.runc_roots)
        if found is None:
            if docker_err is not None:
                raise docker_err
            raise LookupMiss(f"container {full_id[:12]}: no runtime state found")
        try:
            st = load_state(*found)
        except FileNotFoundError as e:
            raise LookupMiss(f"container {full_id[:12]} exited during lookup") from e
        if st.namespace == "moby" and docker_err is None and hint != cgroup.DOCKER:
            try:
                return self._docker(full_id)
            except LookupError as e:
                docker_err = e
        return self._from_state(full_id, st, hint, docker_err)

    # ------------------------------------------------------------------ docker
    def _docker(self, full_id: str) -> ContainerInfo:
        doc = self.docker.container(full_id)
        cfg = doc.get("Config") or {}
        host = doc.get("HostConfig") or {}
        state = doc.get("State") or {}
        labels = {str(k): str(v) for k, v in (cfg.get("Labels") or {}).items()}
        image = cfg.get("Image") or None
        repo, tag, digest = split_image(image)
        image_id = doc.get("Image") or None
        if digest is None and image_id:
            img = self.docker.image(image_id)
            for rd in (img or {}).get("RepoDigests") or ():
                r, _, d = str(rd).partition("@")
                if d and (repo is None or r.endswith(repo) or repo.endswith(r)):
                    digest = d
                    break
        name = str(doc.get("Name") or "").lstrip("/") or None
        k8s = k8s_fields(labels)
        return ContainerInfo(
            full_id=full_id, type="docker", name=name, image=image, image_repository=repo,
            image_tag=tag, image_digest=digest, image_id=_short_image_id(image_id),
            privileged=bool(host.get("Privileged")),
            start_ts=parse_rfc3339_ns(state.get("StartedAt")) or parse_rfc3339_ns(doc.get("Created")),
            labels=labels, mounts=mounts_from_docker(doc.get("Mounts")), status=RESOLVED, **k8s)

    # ------------------------------------------------------------------ runc state based
    def _from_state(self, full_id: str, st: RuncState, hint: str,
                    docker_err: LookupError | None) -> ContainerInfo:
        ann = st.annotations
        labels: dict[str, str] = {}
        crio_labels = _json_map(ann.get("io.kubernetes.cri-o.Labels"))
        if st.namespace == "moby" or hint == cgroup.DOCKER:
            ctype = "docker"
        elif st.namespace is not None:        # a containerd namespace directory
            ctype = "containerd"
        elif ann.get("io.container.manager") == "libpod" or hint == cgroup.PODMAN:
            ctype = "podman"
        elif hint == cgroup.CRIO or crio_labels or any(k in ann for k in CRIO_KEYS):
            ctype = "cri-o"
        else:
            ctype = "runc"
        info = ContainerInfo(full_id=full_id, type=ctype, start_ts=st.created_ns,
                             privileged=spec_privileged(st.spec), status=RESOLVED)
        if ctype != "docker":
            # docker's own list is its inspect Mounts (user mounts only): the bundle's spec would
            # give other values, so a partial docker answer leaves them unknown
            info.mounts = mounts_from_spec(st.spec)
        image = first((ann,), IMAGE_KEYS)
        name: str | None = None
        if ctype == "containerd":
            try:
                doc = ctr_info(full_id, st.namespace or "default", self.cfg.ctr_binary,
                               self.cfg.containerd_socket, self.cfg.timeout)
                labels = {str(k): str(v) for k, v in (doc.get("Labels") or {}).items()}
                image = doc.get("Image") or image
                info.start_ts = info.start_ts or parse_rfc3339_ns(doc.get("CreatedAt"))
            except LookupMiss:
                raise
            except LookupError:
                pass     # ctr missing or containerd down: annotations still give k8s fields
            info.k8s_pod_labels = self._containerd_pod_labels(full_id, ann, st.namespace)
        elif ctype == "podman":
            name, image = self._podman(full_id, st, info, image, labels)
            priv = ann.get("io.podman.annotations.privileged")
            if priv is not None:
                info.privileged = priv.upper() == "TRUE"
        elif ctype == "cri-o":
            labels = {str(k): str(v) for k, v in crio_labels.items()}
            info.k8s_pod_labels = self._crio_pod_labels(full_id, ann)
        k8s = k8s_fields(ann, labels)
        for k, v in k8s.items():
            setattr(info, k, v)
        # runc and containerd name containers by their id; the others have real names, and an
        # unknown one stays missing rather than pretending
        info.name = name or first((ann, labels), CONTAINER_NAME_KEYS) or \
            ann.get("io.kubernetes.cri-o.ContainerName") or \
            (full_id if ctype in ("runc", "containerd") else None)
        info.image = image
        info.image_repository, info.image_tag, digest = split_image(image)
        info.image_digest = info.image_digest or digest
        info.labels = labels
        if docker_err is not None and ctype == "docker":
            # the daemon did not answer but runc still knows the container: a partial answer,
            # counted by the worker as the docker error it was
            raise PartialResult(info, docker_err)
        return info

    def _containerd_pod_labels(self, full_id: str, ann: dict[str, str],
                               namespace: str | None) -> dict[str, str]:
        """containerd CRI: the pod's labels are the sandbox (pause) container's labels."""
        sandbox = ann.get("io.kubernetes.cri.sandbox-id")
        if not sandbox or sandbox == full_id:
            return {}
        try:
            doc = ctr_info(sandbox, namespace or "k8s.io", self.cfg.ctr_binary,
                           self.cfg.containerd_socket, self.cfg.timeout)
        except LookupError:
            return {}        # optional: the container's own metadata is what matters
        return pod_labels(doc.get("Labels") or {})

    def _crio_pod_labels(self, full_id: str, ann: dict[str, str]) -> dict[str, str]:
        """CRI-O: the infra container's ``io.kubernetes.cri-o.Labels`` annotation."""
        sandbox = ann.get("io.kubernetes.cri-o.SandboxID")
        if not sandbox or sandbox == full_id:
            return {}
        found = find_state_file(sandbox, self.cfg.runc_roots)
        if found is None:
            return {}
        try:
            st = load_state(*found)
        except (LookupError, OSError):
            return {}
        return pod_labels(_json_map(st.annotations.get("io.kubernetes.cri-o.Labels")))

    def _podman(self, full_id: str, st: RuncState, info: ContainerInfo, image: str | None,
                labels: dict[str, str]) -> tuple[str | None, str | None]:
        root = storage_root_from_bundle(st.bundle)
        try:
            if root is None:
                raise LookupMiss("podman storage root unknown")
            s = read_storage(root, full_id)
            info.image_id = _short_image_id(s["image_id"])
            info.image_digest = s["image_digest"]
            return s["name"], s["image"] or image
        except LookupError:
            if not self.cfg.podman_inspect:
                raise
        doc = podman_inspect(full_id, self.cfg.podman_binary, root, self.cfg.timeout)
        conf = doc.get("Config") or {}
        labels.update({str(k): str(v) for k, v in (conf.get("Labels") or {}).items()})
        info.image_id = _short_image_id(doc.get("Image"))
        if isinstance(doc.get("Mounts"), list):
            info.mounts = mounts_from_docker(doc["Mounts"])   # what the upstream podman engine reads
        return str(doc.get("Name") or "") or None, doc.get("ImageName") or image


class PartialResult(LookupError):
    """Carries a partial result plus the error that made it partial."""

    def __init__(self, info: ContainerInfo, err: LookupError) -> None:
        super().__init__(str(err))
        self.info = info
        self.err = err


def _short_image_id(image_id: Any) -> str | None:
    if not isinstance(image_id, str) or not image_id:
        return None
    return image_id.removeprefix("sha256:")[:12]


def _json_map(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        v = json.loads(text)
    except ValueError:
        return {}
    return v if isinstance(v, dict) else {}


__all__ = ["DEFAULT_RUNC_ROOTS", "LookupFailed", "LookupMiss", "LookupTimeout", "MetadataResolver",
           "PartialResult", "ResolverConfig"]
