"""Kubernetes metadata from the annotations and labels CRI runtimes write.

containerd's CRI plugin writes ``io.kubernetes.cri.*`` OCI annotations; CRI-O (and kubelet's CRI
labels, which containerd keeps as container labels) use ``io.kubernetes.pod.*`` /
``io.kubernetes.container.name``. Both sets are accepted; the first key found wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypedDict

POD_NAME_KEYS = ("io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name")
POD_NS_KEYS = ("io.kubernetes.cri.sandbox-namespace", "io.kubernetes.pod.namespace")
POD_UID_KEYS = ("io.kubernetes.cri.sandbox-uid", "io.kubernetes.pod.uid")
CONTAINER_NAME_KEYS = ("io.kubernetes.cri.container-name", "io.kubernetes.container.name")
SANDBOX_ID_KEYS = ("io.kubernetes.cri.sandbox-id", "io.kubernetes.cri-o.SandboxID")
IMAGE_KEYS = ("io.kubernetes.cri.image-name", "io.kubernetes.cri-o.ImageName",
              "org.opencontainers.image.ref.name")
#: containerd CRI marks the pause container ``sandbox``; CRI-O uses ``io.kubernetes.cri-o.ContainerType``
CONTAINER_TYPE_KEYS = ("io.kubernetes.cri.container-type", "io.kubernetes.cri-o.ContainerType")
#: keys that prove CRI-O made the container (podman also writes cri-o ``Created``/``TTY``, so
#: those alone prove nothing)
CRIO_KEYS = ("io.kubernetes.cri-o.ContainerID", "io.kubernetes.cri-o.SandboxID",
             "io.kubernetes.cri-o.ImageName", "io.kubernetes.pod.name")
CONTAINERD_CRI_KEYS = ("io.kubernetes.cri.sandbox-id", "io.kubernetes.cri.container-type",
                       "io.kubernetes.cri.sandbox-name")


def first(maps: tuple[Mapping[str, str], ...], keys: tuple[str, ...]) -> str | None:
    """The first value of any of ``keys`` in any of ``maps`` (maps in priority order)."""
    for m in maps:
        for k in keys:
            v = m.get(k)
            if v:
                return str(v)
    return None


class K8sFields(TypedDict):
    """The ``k8s_*`` keyword arguments of :class:`~falconet_container.model.ContainerInfo`."""

    k8s_pod_name: str | None
    k8s_ns_name: str | None
    k8s_pod_uid: str | None
    k8s_container_name: str | None
    k8s_pod_sandbox_id: str | None


def k8s_fields(*maps: Mapping[str, str]) -> K8sFields:
    """``k8s_*`` attributes of :class:`~falconet_container.model.ContainerInfo` from annotation
    and label maps, in priority order."""
    return {
        "k8s_pod_name": first(maps, POD_NAME_KEYS),
        "k8s_ns_name": first(maps, POD_NS_KEYS),
        "k8s_pod_uid": first(maps, POD_UID_KEYS),
        "k8s_container_name": first(maps, CONTAINER_NAME_KEYS),
        "k8s_pod_sandbox_id": first(maps, SANDBOX_ID_KEYS),
    }


#: label prefixes the runtimes and kubelet add themselves; what remains on a pod sandbox are the
#: pod's own labels (kubelet passes them to RunPodSandbox)
_SYSTEM_LABEL_PREFIXES = ("io.kubernetes.", "io.cri-containerd.", "io.containerd.",
                          "org.opencontainers.", "io.podman.")


def pod_labels(sandbox_labels: Mapping[str, str]) -> dict[str, str]:
    """The pod's labels from its sandbox container's labels."""
    return {str(k): str(v) for k, v in sandbox_labels.items()
            if not str(k).startswith(_SYSTEM_LABEL_PREFIXES)}
