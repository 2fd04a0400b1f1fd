"""A minimal Docker Engine API client: HTTP/1.1 over the daemon's unix socket, stdlib only.

Only ``GET`` of JSON documents is needed (container and image inspect). Every call has a hard
timeout covering connect and read, so a daemon that accepts and never answers costs at most
``timeout`` seconds of the background worker, never the hot loop.
"""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any
from urllib.parse import quote

from falconet_container.errors import LookupFailed, LookupMiss, LookupTimeout

API_VERSION = "v1.41"     # dockerd 20.10; newer daemons accept it too


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self._path)
        except BaseException:
            s.close()
            raise
        self.sock = s


class DockerClient:
    """``get(path)`` returns the decoded JSON body or raises a lookup error."""

    def __init__(self, socket_path: str, timeout: float = 2.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def get(self, path: str) -> Any:
        conn = _UnixHTTPConnection(self.socket_path, self.timeout)
        try:
            conn.request("GET", f"/{API_VERSION}{path}", headers={"Accept": "application/json"})
            resp = conn.getresponse()
            body = resp.read()
        except TimeoutError as e:  # socket.timeout is TimeoutError since 3.10
            raise LookupTimeout(f"docker {self.socket_path}: no answer in {self.timeout}s") from e
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise LookupFailed(f"docker {self.socket_path}: {e.strerror or e}") from e
        except (OSError, http.client.HTTPException) as e:
            raise LookupFailed(f"docker {self.socket_path}: {e}") from e
        finally:
            conn.close()
        if resp.status == 404:
            raise LookupMiss(f"docker: {path} not found")
        if resp.status != 200:
            raise LookupFailed(f"docker: {path}: HTTP {resp.status}")
        try:
            return json.loads(body)
        except ValueError as e:
            raise LookupFailed(f"docker: {path}: malformed JSON ({e})") from e

    def container(self, cid: str) -> dict[str, Any]:
        doc = self.get(f"/containers/{quote(cid, safe='')}/json")
        if not isinstance(doc, dict):
            raise LookupFailed("docker: container inspect is not an object")
        return doc

    def image(self, ref: str) -> dict[str, Any] | None:
        """Image inspect, or ``None`` when the image is gone (it may be deleted while in use)."""
        try:
            doc = self.get(f"/images/{quote(ref, safe='')}/json")
        except LookupMiss:
            return None
        return doc if isinstance(doc, dict) else None
