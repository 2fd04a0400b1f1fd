"""The Kubernetes API calls of the response actions, through the official ``kubernetes`` client.

One job: turn "get this pod", "patch its labels", "delete it with a uid precondition", "get its
owner", "get/create a NetworkPolicy" into API calls with a timeout, and every failure into a
:class:`K8sCallError` with a short, secret-free message. The client is imported and configured
lazily, on the response worker thread at the first action (the engine never imports it when no
Kubernetes action is configured), from a kubeconfig file or the in-cluster service account.

Objects come back as the API's JSON (``dict``, camelCase keys as in the API reference), not the
client's model classes: the actions read a handful of fields, and the JSON is the same for every
client version in the pinned range.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from dataclasses import dataclass
from typing import Any

#: the client's own API classes per owner kind the delete guard reads
OWNER_READERS = {"ReplicaSet": "read_namespaced_replica_set",
                 "Deployment": "read_namespaced_deployment",
                 "StatefulSet": "read_namespaced_stateful_set",
                 "DaemonSet": "read_namespaced_daemon_set"}
NOT_INSTALLED = "the kubernetes client is not installed (pip install 'falconet-response[k8s]')"


class K8sCallError(RuntimeError):
    """An API call failed. ``status`` is the HTTP status (0: no answer), ``str()`` is short."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class K8sSettings:
    """``plugins.response.k8s`` (docs/response.md, Kubernetes actions)."""

    kubeconfig: str | None = None        # None: the in-cluster service account
    context: str | None = None           # kubeconfig context (None: its current-context)
    request_timeout: float = 5.0         # connect and read timeout of each API call, seconds
    quarantine_label: str = "falconet.io/quarantine"
    networkpolicy_name: str = "falconet-quarantine"
    field_manager: str = "falconet"


def _status_message(body: Any) -> str:
    """The ``message`` of a ``Status`` answer (server text: names objects, never credentials)."""
    try:
        doc = json.loads(body) if isinstance(body, str | bytes) else None
    except ValueError:
        return ""
    if isinstance(doc, dict) and isinstance(doc.get("message"), str):
        return doc["message"].splitlines()[0][:200] if doc["message"] else ""
    return ""


def describe_error(what: str, e: BaseException) -> K8sCallError:
    """``what: HTTP 403 Forbidden: pods "x" is forbidden: ...`` or ``what: TimeoutError``."""
    status = getattr(e, "status", None)
    if isinstance(status, int) and status:
        reason = str(getattr(e, "reason", "") or "")
        msg = _status_message(getattr(e, "body", None))
        text = f"{what}: HTTP {status} {reason}".rstrip() + (f": {msg}" if msg else "")
        return K8sCallError(text[:300], status)
    if isinstance(e, ModuleNotFoundError):
        return K8sCallError(NOT_INSTALLED)
    name = type(e).__name__
    # urllib3's errors name the pool and the URL path: keep the class name and a bounded first line
    first = str(e).splitlines()[0][:160] if str(e) else ""
    return K8sCallError(f"{what}: {name}" + (f": {first}" if first else ""))


class K8sClient:
    """Thread-safe, lazily configured access to the few API calls the actions make."""

    def __init__(self, settings: K8sSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._apis: tuple[Any, Any, Any] | None = None
        self._models: Any = None
        self._warming = False

    def warm_up(self) -> None:
        """Fail now (load time) when the client is not installed; else import and configure it
        on a daemon thread now, when a policy uses a Kubernetes action, so that the first
        action does not pay ~1 s for it. A failure to configure is left for that action."""
        if importlib.util.find_spec("kubernetes") is None:
            raise ModuleNotFoundError(NOT_INSTALLED)
        with self._lock:
            if self._warming or self._apis is not None:
                return
            self._warming = True

        def build() -> None:
            try:
                self._clients()
            except K8sCallError:
                pass
        threading.Thread(target=build, name="falconet-k8s-warm-up", daemon=True).start()

    def _clients(self) -> tuple[Any, Any, Any]:
        """(CoreV1Api, AppsV1Api, NetworkingV1Api), built once; a failed build is retried at
        the next action (the kubeconfig may appear later), never cached."""
        with self._lock:
            if self._apis is not None:
                return self._apis
            try:
                from kubernetes import client, config  # noqa: PLC0415 - optional dependency
                conf = client.Configuration()
                if self.settings.kubeconfig is None:
                    config.load_incluster_config(client_configuration=conf)
                else:
                    config.load_kube_config(config_file=self.settings.kubeconfig,
                                            context=self.settings.context,
                                            client_configuration=conf, persist_config=False)
            except Exception as e:  # noqa: BLE001 - ConfigException, OSError, YAML errors...
                raise describe_error("kubernetes client configuration", e) from None
            # no urllib3-level retries: one bounded attempt per call, the engine counts failures
            conf.retries = 0
            api = client.ApiClient(conf)
            self._models = client
            self._apis = (client.CoreV1Api(api), client.AppsV1Api(api), client.NetworkingV1Api(api))
            return self._apis

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        t = self.settings.request_timeout
        try:
            resp = fn(*args, _request_timeout=(t, t), _preload_content=False, **kwargs)
            data = resp.data
        except Exception as e:  # noqa: BLE001 - ApiException, urllib3 errors, timeouts
            raise describe_error(what, e) from None
        try:
            doc = json.loads(data) if data else {}
        except ValueError:
            raise K8sCallError(f"{what}: the API server answered with invalid JSON") from None
        if not isinstance(doc, dict):
            raise K8sCallError(f"{what}: the API server answered with a non-object")
        return doc

    # ------------------------------------------------------------------ pods
    def get_pod(self, ns: str, name: str) -> dict[str, Any]:
        core, _, _ = self._clients()
        return self._call(f"get pod {ns}/{name}", core.read_namespaced_pod, name, ns)

    def patch_pod(self, ns: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A strategic merge patch (what ``kubectl label`` sends); ``null`` removes a key.
        Every client version in the pinned range sends a ``dict`` body to PATCH as
        ``application/strategic-merge-patch+json`` (``_content_type`` is not accepted by all)."""
        core, _, _ = self._clients()
        return self._call(f"patch pod {ns}/{name}", core.patch_namespaced_pod, name, ns, patch,
                          field_manager=self.settings.field_manager)

    def delete_pod(self, ns: str, name: str, uid: str, grace_seconds: int | None) -> None:
        """Delete exactly the pod with this uid (a precondition: a pod recreated under the same
        name is never hit)."""
        core, _, _ = self._clients()
        m = self._models
        body = m.V1DeleteOptions(preconditions=m.V1Preconditions(uid=uid),
                                 grace_period_seconds=grace_seconds)
        self._call(f"delete pod {ns}/{name}", core.delete_namespaced_pod, name, ns, body=body)

    # ------------------------------------------------------------------ owners
    def get_owner(self, kind: str, ns: str, name: str) -> dict[str, Any]:
        _, apps, _ = self._clients()
        reader = getattr(apps, OWNER_READERS[kind])
        return self._call(f"get {kind.lower()} {ns}/{name}", reader, name, ns)

    # ------------------------------------------------------------------ network policies
    def get_networkpolicy(self, ns: str, name: str) -> dict[str, Any] | None:
        """The policy, or ``None`` when it does not exist."""
        _, _, net = self._clients()
        try:
            return self._call(f"get networkpolicy {ns}/{name}",
                              net.read_namespaced_network_policy, name, ns)
        except K8sCallError as e:
            if e.status == 404:
                return None
            raise

    def create_networkpolicy(self, ns: str, body: dict[str, Any]) -> dict[str, Any]:
        _, _, net = self._clients()
        return self._call(f"create networkpolicy {ns}/{body['metadata']['name']}",
                          net.create_namespaced_network_policy, ns, body,
                          field_manager=self.settings.field_manager)
