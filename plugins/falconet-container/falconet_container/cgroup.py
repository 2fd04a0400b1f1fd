"""Container ids from cgroup paths (``/proc/<pid>/cgroup``).

Only 64-hex ids count: the host's ``/process_api/<32 hex>`` memory cgroup and runc containers
named with non-hex names are not containers we can look up.
"""

from __future__ import annotations

import re

#: runtime hints derived from the cgroup path (the runtime lookup confirms them)
DOCKER, CONTAINERD, CRIO, PODMAN, UNKNOWN = "docker", "containerd", "cri-o", "podman", ""

# one path component; order matters: the specific prefixes win over a bare id
_COMPONENT_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^docker-([0-9a-f]{64})\.scope$"), DOCKER),
    (re.compile(r"^cri-containerd-([0-9a-f]{64})\.scope$"), CONTAINERD),
    (re.compile(r"^crio-(?:conmon-)?([0-9a-f]{64})(?:\.scope)?$"), CRIO),
    (re.compile(r"^libpod-(?:conmon-)?([0-9a-f]{64})(?:\.scope)?$"), PODMAN),
    (re.compile(r"^([0-9a-f]{64})$"), UNKNOWN),
)


def container_from_path(path: str) -> tuple[str, str]:
    """``(full_id, hint)`` for one cgroup path; ``("", "")`` when it is not a container.

    The innermost matching component wins (a container's own cgroup is below its pod's).
    ``/docker/<id>`` gives the ``docker`` hint, ``.../kubepods/.../<id>`` ``containerd`` (CRI-O
    uses ``crio-<id>``), a bare ``/<namespace>/<id>`` no hint (runc or containerd: the lookup
    decides from where the runtime state lives).
    """
    parts = path.split("/")
    for i in range(len(parts) - 1, -1, -1):
        comp = parts[i]
        if len(comp) < 64:
            continue
        for pat, hint in _COMPONENT_PATTERNS:
            m = pat.match(comp)
            if m:
                if hint == UNKNOWN and i > 0:
                    parent = parts[i - 1]
                    if parent == "docker":
                        hint = DOCKER
                    elif parent in ("crio", "cri-o"):
                        hint = CRIO
                    elif "kubepods" in path:
                        hint = CONTAINERD
                return m.group(1), hint
    return "", ""


def container_from_cgroup_text(text: str) -> tuple[str, str]:
    """``(full_id, hint)`` from the contents of ``/proc/<pid>/cgroup`` (v1, v2 or hybrid).

    The unified ``0::`` line is read first: an exited (zombie) task shows ``/`` on its v1 lines
    while ``0::`` still names its cgroup. The v1 lines are a fallback for pure-v1 hosts.
    """
    v1_paths = []
    for line in text.splitlines():
        hid, _, rest = line.partition(":")
        _controllers, _, path = rest.partition(":")
        if hid == "0":
            found = container_from_path(path)
            if found[0]:
                return found
        else:
            v1_paths.append(path)
    for path in v1_paths:
        found = container_from_path(path)
        if found[0]:
            return found
    return "", ""


#: ``pod<uid>`` (cgroupfs: ``/kubepods/burstable/pod1f0c...-...``) or the systemd slice form
#: (``kubepods-burstable-pod1f0c..._..._....slice``: dashes of the uid become underscores)
_POD_UID = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})"
                      r"(?:\.slice)?$")


def pod_uid_from_cgroup_text(text: str) -> str | None:
    """The Kubernetes pod uid in a ``/proc/<pid>/cgroup`` text (kubelet names the pod's cgroup
    after it), dashed as the API writes it; ``None`` outside a Kubernetes pod."""
    if "pod" not in text:
        return None
    for line in text.splitlines():
        path = line.partition(":")[2].partition(":")[2]
        for comp in reversed(path.split("/")):
            m = _POD_UID.search(comp)
            if m:
                return m.group(1).replace("_", "-")
    return None


def read_proc_cgroup(pid: int, proc_root: str = "/proc") -> str | None:
    """The text of ``/proc/<pid>/cgroup``, or ``None`` when the process is gone."""
    try:
        with open(f"{proc_root}/{pid}/cgroup", encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None
