"""Name and image of a podman container from podman's containers/storage files.

podman 4.3 keeps its own container database in bolt (``libpod/bolt_state.db``), but the storage
layer it sits on writes plain JSON: ``<root>/overlay-containers/containers.json`` lists every
container with ``names`` and a ``metadata`` JSON string holding ``image-name``/``image-id``/
``name``; ``<root>/overlay-images/images.json`` has each image's registry ``digest``. The storage
root is found from the runc bundle path (``<root>/overlay-containers/<id>/userdata``), so no
configuration is needed. ``podman inspect`` (a subprocess, background worker only) is the
fallback when these files are not there (another storage driver, a future format).
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from falconet_container.errors import LookupFailed, LookupMiss, LookupTimeout


def storage_root_from_bundle(bundle: str | None) -> str | None:
    """``<root>`` from ``<root>/<driver>-containers/<id>/userdata``."""
    if not bundle:
        return None
    d = os.path.dirname(os.path.dirname(bundle.rstrip("/")))
    return os.path.dirname(d) if d.endswith("-containers") else None


def _driver_dir(root: str, kind: str) -> str | None:
    try:
        for name in os.listdir(root):
            if name.endswith(f"-{kind}"):
                return os.path.join(root, name)
    except OSError:
        return None
    return None


def read_storage(root: str, full_id: str) -> dict[str, Any]:
    """``{"name", "image", "image_id", "image_digest"}`` from the storage JSON files.
    Raises :class:`LookupMiss` when the container is not listed, :class:`LookupFailed` on
    malformed files."""
    cdir = _driver_dir(root, "containers")
    if cdir is None:
        raise LookupMiss(f"podman storage {root}: no containers directory")
    path = os.path.join(cdir, "containers.json")
    try:
        with open(path, encoding="utf-8") as f:
            entries = json.load(f)
    except FileNotFoundError as e:
        raise LookupMiss(f"{path}: missing") from e
    except ValueError as e:
        raise LookupFailed(f"{path}: malformed JSON: {e}") from e
    entry = next((c for c in entries if isinstance(c, dict) and c.get("id") == full_id), None) \
        if isinstance(entries, list) else None
    if entry is None:
        raise LookupMiss(f"{path}: container {full_id[:12]} not listed")
    try:
        meta = json.loads(entry.get("metadata") or "{}")
    except ValueError:
        meta = {}
    names = entry.get("names") or []
    out: dict[str, Any] = {
        "name": meta.get("name") or (names[0] if names else None),
        "image": meta.get("image-name"),
        "image_id": entry.get("image") or meta.get("image-id"),
        "image_digest": None,
    }
    idir = _driver_dir(root, "images")
    if idir and out["image_id"]:
        try:
            with open(os.path.join(idir, "images.json"), encoding="utf-8") as f:
                images = json.load(f)
            for img in images if isinstance(images, list) else ():
                if isinstance(img, dict) and img.get("id") == out["image_id"]:
                    out["image_digest"] = img.get("digest")
                    break
        except (OSError, ValueError):
            pass   # the digest is optional; name and image are already known
    return out


def podman_inspect(full_id: str, binary: str, root: str | None, timeout: float) -> dict[str, Any]:
    """``podman inspect`` as an argument vector (no shell). Background worker only."""
    argv = [binary]
    if root:
        argv += ["--root", root]
    argv += ["inspect", "--type", "container", full_id]
    try:
        cp = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        raise LookupTimeout(f"podman inspect: no answer in {timeout}s") from e
    except OSError as e:
        raise LookupFailed(f"podman inspect: {e}") from e
    if cp.returncode != 0:
        raise LookupMiss(f"podman inspect: {cp.stderr.decode(errors='replace').strip()[:200]}")
    try:
        doc = json.loads(cp.stdout)[0]
    except (ValueError, IndexError, KeyError) as e:
        raise LookupFailed(f"podman inspect: unexpected output ({e})") from e
    if not isinstance(doc, dict):
        raise LookupFailed("podman inspect: unexpected output")
    return doc
