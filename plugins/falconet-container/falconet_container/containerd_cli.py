"""Image and labels of a containerd container: ``ctr containers info`` (background worker only).

containerd keeps image names and container labels in its bolt metadata database, reachable only
through its gRPC API; rather than pulling in grpc and the API protos, the worker asks the ``ctr``
client that ships with containerd, as an argument vector (no shell) with a connect timeout
(``ctr`` otherwise waits ~10 s for a missing socket) and a hard subprocess timeout.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from falconet_container.errors import LookupFailed, LookupMiss, LookupTimeout


def ctr_info(full_id: str, namespace: str, binary: str, address: str,
             timeout: float) -> dict[str, Any]:
    argv = [binary, "--address", address, "--connect-timeout", f"{max(timeout, 0.1):.1f}s",
            "--namespace", namespace, "containers", "info", full_id]
    try:
        cp = subprocess.run(argv, capture_output=True, timeout=timeout + 1.0, check=False)
    except subprocess.TimeoutExpired as e:
        raise LookupTimeout(f"ctr containers info: no answer in {timeout}s") from e
    except OSError as e:
        raise LookupFailed(f"ctr: {e}") from e
    if cp.returncode != 0:
        err = cp.stderr.decode(errors="replace").strip()
        if "not found" in err:
            raise LookupMiss(f"containerd: {full_id[:12]} not found in namespace {namespace}")
        if "deadline exceeded" in err or "context deadline" in err:
            raise LookupTimeout(f"ctr: {err[:200]}")
        raise LookupFailed(f"ctr: {err[:200]}")
    try:
        doc = json.loads(cp.stdout)
    except ValueError as e:
        raise LookupFailed(f"ctr containers info: malformed JSON ({e})") from e
    if not isinstance(doc, dict):
        raise LookupFailed("ctr containers info: not an object")
    return doc
