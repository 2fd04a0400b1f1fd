"""A protocol-level STAND-IN for kube-apiserver on 127.0.0.1, for the Kubernetes response actions.

No real API server can be installed here (Debian ships only kubectl; nothing on PyPI ships the
server), so this speaks the parts of the real wire protocol the actions use, driven by the real
``kubernetes`` client through a kubeconfig. It started as a copy of
plugins/falconet-container/tests/k8s_apiserver.py (a plugin's tests stand alone) without the
list and watch endpoints (the actions read single objects), extended with:

- ``GET``/``PATCH``/``DELETE /api/v1/namespaces/{ns}/pods/{name}``: ``PATCH`` accepts
  ``application/strategic-merge-patch+json`` and ``application/merge-patch+json`` (RFC 7386
  semantics, ``null`` removes a key, which is what both do for ``metadata.labels``), answers
  ``400`` to a JSON Patch whose body is not a list and ``415`` to other types, and ``409
  Conflict`` when ``metadata.resourceVersion`` in the patch is not the stored one; ``DELETE``
  reads ``DeleteOptions`` (``preconditions.uid``: ``409`` when it differs; ``gracePeriodSeconds``).
- ``GET /apis/apps/v1/namespaces/{ns}/{replicasets,deployments,statefulsets,daemonsets}/{name}``.
- ``GET /apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/{name}`` and ``POST`` to the
  collection (``409 AlreadyExists`` for an existing name).
- ``Status`` objects with 401 for a wrong bearer token, 403 for a (verb, resource) listed in
  :attr:`FakeApiServer.forbidden` (the RBAC message kube-apiserver writes), 404 for a missing
  object; an optional per-request delay (timeouts).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from local_http import serve, shutdown

TOKEN = "falconet-test-token"
_CORE = re.compile(r"^/api/v1/namespaces/([^/]+)/(pods)(?:/([^/]+))?$")
_APPS = re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/(replicasets|deployments|statefulsets|"
                   r"daemonsets)(?:/([^/]+))?$")
_NET = re.compile(r"^/apis/networking.k8s.io/v1/namespaces/([^/]+)/(networkpolicies)(?:/([^/]+))?$")
KINDS = {"pods": "Pod", "replicasets": "ReplicaSet", "deployments": "Deployment",
         "statefulsets": "StatefulSet", "daemonsets": "DaemonSet",
         "networkpolicies": "NetworkPolicy"}
API_VERSIONS = {"pods": "v1", "networkpolicies": "networking.k8s.io/v1"}


def need_kubernetes_client() -> None:
    """tests/conftest.py's policy (plugin tests stand alone): missing in CI is a failure."""
    if importlib.util.find_spec("kubernetes") is not None:
        return
    why = "the kubernetes client is not installed (pip install 'falconet-response[k8s]')"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI prerequisite missing: {why}", pytrace=False)
    pytest.skip(why)


@contextmanager
def running_api_server() -> Iterator[FakeApiServer]:
    """A started stand-in (and the client it is for), stopped afterwards."""
    need_kubernetes_client()
    srv = FakeApiServer().start()
    try:
        yield srv
    finally:
        srv.stop()


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (``null`` deletes a key)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


class FakeApiServer:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rv = 1000
        #: (resource, namespace, name) -> object
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        #: (verb, resource) pairs answered 403 (the service account's RBAC lacks them)
        self.forbidden: set[tuple[str, str]] = set()
        #: (method, path, query, content-type, parsed body)
        self.requests: list[tuple[str, str, dict[str, str], str, Any]] = []
        self.delay = 0.0                # seconds before every answer (timeouts)
        #: called before a PATCH is applied (tests use it to change the object concurrently)
        self.before_patch: Any = None
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeApiServer:
        self._server = serve(_handler(self), self.port)
        self.port = self._server.server_address[1]
        return self

    def stop(self) -> None:
        shutdown(self._server)
        self._server = None

    def write_kubeconfig(self, path: Path, token: str = TOKEN) -> Path:
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "falconet", "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {"cluster": "fake", "user": "falconet"}}]}))
        return path

    # ------------------------------------------------------------------ cluster state
    def _bump(self) -> str:
        self.rv += 1
        return str(self.rv)

    def put(self, resource: str, ns: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Store an object (metadata filled in like the server does) and return it."""
        with self.lock:
            obj = copy.deepcopy(body)
            md = obj.setdefault("metadata", {})
            md.update(name=name, namespace=ns, resourceVersion=self._bump())
            md.setdefault("uid", str(uuid.uuid4()))
            md.setdefault("creationTimestamp", "2026-11-28T18:20:20Z")
            obj["kind"] = KINDS[resource]
            obj["apiVersion"] = API_VERSIONS.get(resource, "apps/v1")
            self.objects[(resource, ns, name)] = obj
            return copy.deepcopy(obj)

    def add_pod(self, name: str, ns: str, labels: dict[str, str] | None = None, *,
                owner: tuple[str, str] | None = None, ready: bool = True,
                annotations: dict[str, str] | None = None) -> str:
        md: dict[str, Any] = {"labels": dict(labels or {}), "annotations": dict(annotations or {})}
        if owner:
            md["ownerReferences"] = [{"apiVersion": "v1" if owner[0] == "Node" else "apps/v1",
                                      "kind": owner[0], "name": owner[1],
                                      "uid": str(uuid.uuid4()), "controller": True,
                                      "blockOwnerDeletion": True}]
        pod = self.put("pods", ns, name, {"metadata": md, "spec": {
            "nodeName": "node-a", "containers": [{"name": "app", "image": "busybox:latest"}]},
            "status": {"phase": "Running", "podIP": "10.244.1.7", "conditions": [
                {"type": "Ready", "status": "True" if ready else "False"}]}})
        return str(pod["metadata"]["uid"])

    def add_owner(self, resource: str, ns: str, name: str, available: int,
                  owner: tuple[str, str] | None = None, desired: int | None = None) -> None:
        """A ReplicaSet/Deployment/StatefulSet (``availableReplicas``) or DaemonSet
        (``numberAvailable``), optionally controlled by ``owner`` (kind, name)."""
        md: dict[str, Any] = {}
        if owner:
            md["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1],
                                      "uid": str(uuid.uuid4()), "controller": True}]
        desired = available if desired is None else desired
        st = ({"numberAvailable": available, "desiredNumberScheduled": desired,
               "currentNumberScheduled": available, "numberMisscheduled": 0, "numberReady": available}
              if resource == "daemonsets" else
              {"replicas": available, "readyReplicas": available, "availableReplicas": available})
        spec = {} if resource == "daemonsets" else {"replicas": desired}
        self.put(resource, ns, name, {"metadata": md, "spec": spec, "status": st})

    def get(self, resource: str, ns: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            obj = self.objects.get((resource, ns, name))
            return copy.deepcopy(obj) if obj else None

    def touch(self, resource: str, ns: str, name: str) -> None:
        """Change an object behind the client's back (a new resourceVersion)."""
        with self.lock:
            self.objects[(resource, ns, name)]["metadata"]["resourceVersion"] = self._bump()

    def calls(self, method: str, resource: str | None = None) -> list[tuple[Any, ...]]:
        return [r for r in self.requests if r[0] == method
                and (resource is None or f"/{resource}" in r[1])]


def _handler(api: FakeApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: Any) -> None:
            pass

        def _send_json(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass                     # the client timed out and went away (timeout tests)
            self.close_connection = True

        def _body(self) -> Any:
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            try:
                return json.loads(raw) if raw else None
            except ValueError:
                return raw

        def _route(self, method: str) -> None:
            url = urlsplit(self.path)
            q = {k: v[-1] for k, v in parse_qs(url.query).items()}
            ctype = self.headers.get("Content-Type", "")
            body = self._body() if method in ("PATCH", "POST", "DELETE") else None
            api.requests.append((method, url.path, q, ctype, body))
            if api.delay:
                time.sleep(api.delay)
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._send_json(401, status(401, "Unauthorized", "Unauthorized"))
                return
            m = _CORE.match(url.path) or _APPS.match(url.path) or _NET.match(url.path)
            if m is None:
                self._send_json(404, status(404, "NotFound", f"the server could not find {url.path}"))
                return
            ns, resource, name = m.group(1), m.group(2), m.group(3)
            verb = {"GET": "get", "PATCH": "patch", "DELETE": "delete", "POST": "create"}[method]
            if (verb, resource) in api.forbidden:
                group = "" if resource == "pods" else url.path.split("/")[2]
                self._send_json(403, status(
                    403, "Forbidden", f'{resource} "{name or ""}" is forbidden: User '
                    f'"system:serviceaccount:falconet:falconet" cannot {verb} resource '
                    f'"{resource}" in API group "{group}" in the namespace "{ns}"'))
                return
            if method == "POST" and name is None:
                self._create(resource, ns, body)
                return
            if name is None:
                self._send_json(405, status(405, "MethodNotAllowed", "not supported here"))
                return
            key = (resource, ns, name)
            with api.lock:
                exists = key in api.objects
            if not exists:
                self._send_json(404, status(404, "NotFound", f'{resource} "{name}" not found'))
                return
            if method == "GET":
                self._send_json(200, api.get(resource, ns, name) or {})
            elif method == "PATCH":
                self._patch(key, ctype, body)
            elif method == "DELETE":
                self._delete(key, body)

        def _create(self, resource: str, ns: str, body: Any) -> None:
            # like kube-apiserver, no Content-Type means its first serializer, JSON (the
            # client's create_* calls send none in some versions)
            if self.headers.get("Content-Type", "application/json").split(";")[0] != "application/json":
                self._send_json(415, status(415, "UnsupportedMediaType", "expected application/json"))
                return
            if not isinstance(body, dict) or body.get("kind") != KINDS[resource]:
                self._send_json(400, status(400, "BadRequest", f"expected a {KINDS[resource]}"))
                return
            md = body.get("metadata") or {}
            name = md.get("name")
            if not name or md.get("namespace", ns) != ns:
                self._send_json(400, status(400, "BadRequest", "metadata.name/namespace invalid"))
                return
            with api.lock:
                exists = (resource, ns, name) in api.objects
            if exists:
                self._send_json(409, status(409, "AlreadyExists",
                                            f'{resource} "{name}" already exists'))
                return
            self._send_json(201, api.put(resource, ns, name, body))

        def _patch(self, key: tuple[str, str, str], ctype: str, body: Any) -> None:
            ctype = ctype.split(";")[0].strip()
            if ctype == "application/json-patch+json" and not isinstance(body, list):
                self._send_json(400, status(400, "BadRequest", "json: cannot unmarshal object "
                                            "into Go value of type jsonpatch.Patch"))
                return
            if ctype not in ("application/strategic-merge-patch+json",
                             "application/merge-patch+json"):
                self._send_json(415, status(415, "UnsupportedMediaType",
                                            f"the body of the request was in an unknown format "
                                            f"- accepted media types include: "
                                            f"application/merge-patch+json, got {ctype}"))
                return
            if not isinstance(body, dict):
                self._send_json(400, status(400, "BadRequest", "the patch is not an object"))
                return
            if api.before_patch is not None:
                api.before_patch(key)
            with api.lock:
                obj = api.objects[key]
                want_rv = (body.get("metadata") or {}).get("resourceVersion")
                if want_rv is not None and want_rv != obj["metadata"]["resourceVersion"]:
                    conflict = True
                else:
                    conflict = False
                    new = merge_patch(obj, body)
                    for fixed in ("name", "namespace", "uid"):
                        new["metadata"][fixed] = obj["metadata"][fixed]
                    new["metadata"]["resourceVersion"] = api._bump()
                    api.objects[key] = new
                    out = copy.deepcopy(new)
            if conflict:
                self._send_json(409, status(
                    409, "Conflict", f'Operation cannot be fulfilled on {key[0]} "{key[2]}": the '
                    "object has been modified; please apply your changes to the latest version "
                    "and try again"))
                return
            self._send_json(200, out)

        def _delete(self, key: tuple[str, str, str], body: Any) -> None:
            opts = body if isinstance(body, dict) else {}
            want_uid = (opts.get("preconditions") or {}).get("uid")
            with api.lock:
                obj = api.objects[key]
                have = obj["metadata"]["uid"]
                if want_uid and want_uid != have:
                    msg = f"Precondition failed: UID in precondition: {want_uid}, UID in object meta: {have}"
                    ok = False
                else:
                    ok = True
                    obj = api.objects.pop(key)
                    obj["metadata"]["deletionTimestamp"] = "2026-12-01T23:00:00Z"
                    obj["metadata"]["deletionGracePeriodSeconds"] = opts.get("gracePeriodSeconds", 30)
            if not ok:
                self._send_json(409, status(409, "Conflict", msg))
                return
            self._send_json(200, obj)

        def do_GET(self) -> None:  # noqa: N802 - http.server's names
            self._route("GET")

        def do_PATCH(self) -> None:  # noqa: N802
            self._route("PATCH")

        def do_DELETE(self) -> None:  # noqa: N802
            self._route("DELETE")

        def do_POST(self) -> None:  # noqa: N802
            self._route("POST")

    return Handler
