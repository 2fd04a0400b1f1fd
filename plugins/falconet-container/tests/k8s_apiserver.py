"""A protocol-level stand-in for kube-apiserver on 127.0.0.1, for the ``k8s_api`` tests.

No real API server can be installed here (Debian ships only kubectl; nothing on PyPI ships the
server), so this speaks the parts of the real wire protocol the plugin uses, driven by the real
``kubernetes`` client: ``GET /api/v1/pods`` (with ``fieldSelector=spec.nodeName=...``) and
``GET /api/v1/namespaces`` as ``PodList``/``NamespaceList`` JSON with a list ``resourceVersion``;
``?watch=true&resourceVersion=N`` as a chunked stream of JSON lines ``{"type": ADDED|MODIFIED|
DELETED|BOOKMARK|ERROR, "object": ...}``, ended after ``timeoutSeconds``; ``ERROR`` with a
``Status`` of code 410 when N is older than the retained history (etcd compaction); ``Status``
objects with 401/403 for a wrong bearer token or a forbidden resource.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "falconet-test-token"
PATHS = {"/api/v1/pods": "pods", "/api/v1/namespaces": "namespaces"}


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class FakeApiServer:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.rv = 1000
        self.pods: dict[str, dict[str, Any]] = {}
        self.namespaces: dict[str, dict[str, Any]] = {}
        self.history: list[tuple[int, str, str, dict[str, Any]]] = []  # (rv, resource, type, obj)
        self.oldest_rv = 0              # a watch from before this gets 410 Gone
        self.always_gone = False        # every watch gets 410 Gone (a misbehaving server)
        self.forbidden: set[str] = set()
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.active_watches = 0
        self._generation = 0            # bumped to end the open watches
        self._down = False
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeApiServer:
        srv = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        srv.daemon_threads = True
        self.port = srv.server_address[1]
        self._server = srv
        with self.cond:
            self._down = False
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        """Go down: refuse connections and cut the open watches (a restart keeps the port and
        the state, like an API server behind a stable address)."""
        with self.cond:
            self._down = True
            self._generation += 1
            self.cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def write_kubeconfig(self, path: Path, token: str = TOKEN) -> Path:
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "falconet", "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {"cluster": "fake", "user": "falconet"}}]}))
        return path

    # ------------------------------------------------------------------ cluster changes
    def _record(self, resource: str, typ: str, obj: dict[str, Any]) -> None:
        self.history.append((self.rv, resource, typ, json.loads(json.dumps(obj))))
        self.cond.notify_all()

    def add_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        with self.cond:
            self.rv += 1
            typ = "MODIFIED" if name in self.namespaces else "ADDED"
            obj = {"kind": "Namespace", "apiVersion": "v1",
                   "metadata": {"name": name, "uid": str(uuid.uuid4()),
                                "resourceVersion": str(self.rv),
                                "labels": {"kubernetes.io/metadata.name": name, **(labels or {})}},
                   "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
            self.namespaces[name] = obj
            self._record("namespaces", typ, obj)

    def add_pod(self, name: str, namespace: str, node: str, labels: dict[str, str],
                ip: str | None = "10.244.1.7", uid: str | None = None) -> str:
        with self.cond:
            self.rv += 1
            uid = uid or str(uuid.uuid4())
            obj = {"kind": "Pod", "apiVersion": "v1",
                   "metadata": {"name": name, "namespace": namespace, "uid": uid,
                                "resourceVersion": str(self.rv), "labels": dict(labels),
                                "creationTimestamp": "2026-11-28T18:20:20Z"},
                   "spec": {"nodeName": node,
                            "containers": [{"name": "app", "image": "busybox:latest"}]},
                   "status": {"phase": "Running", "hostIP": "192.168.1.10",
                              **({"podIP": ip, "podIPs": [{"ip": ip}]} if ip else {})}}
            self.pods[uid] = obj
            self._record("pods", "ADDED", obj)
            return uid

    def set_pod_labels(self, uid: str, labels: dict[str, str]) -> None:
        with self.cond:
            self.rv += 1
            obj = self.pods[uid]
            obj["metadata"]["labels"] = dict(labels)
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self._record("pods", "MODIFIED", obj)

    def delete_pod(self, uid: str) -> None:
        with self.cond:
            self.rv += 1
            obj = self.pods.pop(uid)
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self._record("pods", "DELETED", obj)

    def compact(self) -> None:
        """Forget the history (etcd compaction) and end the open watches: a client resuming
        from its last resourceVersion gets ``410 Gone`` and has to relist."""
        with self.cond:
            self.history.clear()
            self.oldest_rv = self.rv + 1
            self._generation += 1
            self.cond.notify_all()

    def bookmark(self) -> None:
        with self.cond:
            self.history.append((self.rv, "*", "BOOKMARK", {}))
            self.cond.notify_all()

    def count(self, resource: str, watch: bool) -> int:
        return sum(1 for path, q in self.requests
                   if PATHS.get(path) == resource and (q.get("watch") == "true") == watch)

    # ------------------------------------------------------------------ request side
    def visible(self, resource: str, obj: dict[str, Any], selector: str | None) -> bool:
        if resource != "pods" or not selector:
            return True
        key, _, want = selector.replace("==", "=").partition("=")
        assert key == "spec.nodeName", f"unsupported fieldSelector {selector}"
        return obj["spec"].get("nodeName") == want


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
            self.wfile.write(data)
            self.close_connection = True

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            url = urlsplit(self.path)
            q = {k: v[-1] for k, v in parse_qs(url.query).items()}
            api.requests.append((url.path, q))
            resource = PATHS.get(url.path)
            if resource is None:
                self._send_json(404, status(404, "NotFound", f"the server could not find {url.path}"))
                return
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._send_json(401, status(401, "Unauthorized", "Unauthorized"))
                return
            if resource in api.forbidden:
                self._send_json(403, status(
                    403, "Forbidden", f'{resource} is forbidden: User "system:serviceaccount:'
                    f'falconet:falconet" cannot list resource "{resource}" in API group "" at '
                    "the cluster scope"))
                return
            selector = q.get("fieldSelector")
            if q.get("watch") == "true":
                self._watch(resource, selector, int(q.get("resourceVersion") or 0),
                            float(q.get("timeoutSeconds") or 300))
                return
            with api.cond:
                store = api.pods if resource == "pods" else api.namespaces
                items = [o for o in store.values() if api.visible(resource, o, selector)]
                body = {"kind": "PodList" if resource == "pods" else "NamespaceList",
                        "apiVersion": "v1", "metadata": {"resourceVersion": str(api.rv)},
                        "items": json.loads(json.dumps(items))}
            self._send_json(200, body)

        def _chunk(self, obj: dict[str, Any]) -> None:
            line = (json.dumps(obj) + "\n").encode()
            self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            self.wfile.flush()

        def _watch(self, resource: str, selector: str | None, rv: int, timeout: float) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            self._seen: list[Any] = []
            deadline = time.monotonic() + timeout
            with api.cond:
                gen = api._generation
                api.active_watches += 1
            try:
                if api.always_gone or (rv and rv < api.oldest_rv):
                    self._chunk({"type": "ERROR", "object": status(
                        410, "Expired", f"too old resource version: {rv} ({api.oldest_rv})")})
                    return
                sent = rv
                while True:
                    with api.cond:
                        todo = [h for h in api.history if h[0] > sent or
                                (h[2] == "BOOKMARK" and h[0] >= sent and h not in self._seen)]
                        if not todo:
                            left = deadline - time.monotonic()
                            if left <= 0 or api._down or api._generation != gen:
                                return
                            api.cond.wait(min(left, 0.5))
                            if api._down or api._generation != gen:
                                return
                            continue
                    for h in todo:
                        hrv, res, typ, obj = h
                        if typ == "BOOKMARK":
                            self._seen.append(h)
                            self._chunk({"type": "BOOKMARK", "object": {
                                "kind": "Pod" if resource == "pods" else "Namespace",
                                "apiVersion": "v1", "metadata": {"resourceVersion": str(hrv)}}})
                            continue
                        sent = max(sent, hrv)
                        if res == resource and api.visible(resource, obj, selector):
                            self._chunk({"type": typ, "object": obj})
            except (BrokenPipeError, ConnectionResetError):
                return
            finally:
                with api.cond:
                    api.active_watches -= 1
                    down = api._down
                try:
                    if down:      # a server going down cuts the stream, it does not end it
                        self.connection.shutdown(2)
                    else:
                        self.wfile.write(b"0\r\n\r\n")
                        self.wfile.flush()
                except OSError:
                    pass

    return Handler
