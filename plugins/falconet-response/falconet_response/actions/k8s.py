"""Kubernetes response actions: ``label``, ``quarantine`` and ``delete_pod`` on the alert's pod.

Every action starts by reading the pod by namespace and name and checking its uid against the
alert's (``k8s.pod.uid``): a pod recreated under the same name is a different workload and is
never touched. Writes carry preconditions so that check still holds when the write lands: label
patches carry the ``resourceVersion`` that was read (``409 Conflict`` if the pod changed in
between: read again and retry once), deletes carry the uid.

- ``label``: set labels on the pod; undo puts back the previous values of the labels whose value
  is still the one set (a later change by someone else is kept).
- ``quarantine``: make sure a deny-all NetworkPolicy (ingress and egress, no rules) selecting the
  quarantine label exists in the pod's namespace, then label the pod (policy first, so the label
  takes effect the moment it lands). Undo removes the label; the policy stays (it selects no pod
  once none carries the label, and other quarantined pods of the namespace may share it). An
  existing policy of that name with any other spec is never overwritten: the action fails.
- ``delete_pod``: guards first, each of which turns the action into ``skipped``: a static
  (mirror) pod or a DaemonSet's pod only with ``allow_static`` / ``allow_daemonset``; the pod's
  controller (Deployment via its ReplicaSet, ReplicaSet, StatefulSet, DaemonSet) must keep at
  least ``min_healthy_replicas`` (a count, or a percentage of its desired replicas) available
  replicas besides this pod. A pod without a controller
  has none besides itself, so it is deleted only with ``min_healthy_replicas: 0``. An alert
  without ``k8s.pod.uid`` deletes nothing (the pod could not be told from a namesake). Not
  reversible.

All calls go through :mod:`.k8s_client` (timeouts, no urllib3 retries, short error texts); an
expected failure is an ``Outcome(result="failed")``, never an exception.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from falconet.alerts import Alert

from .base import Action, ActionParamError, Outcome, Target
from .k8s_client import K8sCallError, K8sClient, K8sSettings
from .params import check_known, flag, number

_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_PERCENT = re.compile(r"[0-9]{1,3}%")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
#: kubelet marks the API copy of a static pod with this annotation
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
#: annotation the quarantine sets: which rule caused it (operators see why with kubectl)
REASON_ANNOTATION = "falconet.io/quarantine-rule"
MANAGED_BY = {"app.kubernetes.io/managed-by": "falconet"}


# ---------------------------------------------------------------------- validation
def label_key_problem(key: Any) -> str | None:
    """Why ``key`` is not a valid label/annotation key (``[prefix/]name``), or ``None``."""
    if not isinstance(key, str) or not key:
        return "a non-empty string"
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not _SUBDOMAIN.fullmatch(prefix)):
        return "a DNS subdomain prefix (example.com/) before the '/'"
    if len(name) > 63 or not _NAME.fullmatch(name):
        return "a name of at most 63 characters [A-Za-z0-9-_.], alphanumeric at both ends"
    return None


def label_value_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return "a string (quote numbers and booleans)"
    if value and (len(value) > 63 or not _NAME.fullmatch(value)):
        return "at most 63 characters [A-Za-z0-9-_.], alphanumeric at both ends, or empty"
    return None


def _labels_param(v: Any, key: str = "labels") -> dict[str, str]:
    if not isinstance(v, Mapping) or not v:
        raise ActionParamError(f"{key} must be a non-empty mapping of label: value")
    out: dict[str, str] = {}
    for k, val in v.items():
        why = label_key_problem(k)
        if why:
            raise ActionParamError(f"label key {k!r} must be {why}")
        why = label_value_problem(val)
        if why:
            raise ActionParamError(f"label {k} value {val!r} must be {why}")
        out[k] = val
    return out


def _ttl(params: Mapping[str, Any]) -> dict[str, float]:
    """``ttl``: the engine undoes a reversible action by itself after this many seconds."""
    v = number(params, "ttl", None, 1, 30 * 86400, "")
    return {} if v is None else {"ttl": float(v)}


def _min_healthy(v: Any) -> int | str:
    """An absolute count or a percentage (``"50%"``) of the controller's desired replicas."""
    if isinstance(v, str) and _PERCENT.fullmatch(v) and int(v[:-1]) <= 100:
        return v
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 100_000:
        raise ActionParamError(f"min_healthy_replicas must be an integer in [0, 100000] or a "
                               f"percentage like \"50%\", got {v!r}")
    return v


def _count(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0


def parse_settings(cfg: Mapping[str, Any] | None) -> K8sSettings:
    """Validate ``plugins.response.k8s``; raises :class:`ActionParamError` naming the key."""
    cfg = cfg or {}
    where = "plugins.response.k8s"
    if not isinstance(cfg, Mapping):
        raise ActionParamError(f"{where} must be a mapping")
    known = {"kubeconfig", "context", "request_timeout", "quarantine_label", "networkpolicy_name",
             "field_manager"}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ActionParamError(f"{where}: unknown setting(s) {', '.join(map(str, unknown))} "
                               f"(known: {', '.join(sorted(known))})")
    s = K8sSettings()
    values: dict[str, Any] = {}
    for key in ("kubeconfig", "context"):
        v = cfg.get(key)
        if v is not None and (not isinstance(v, str) or not v):
            raise ActionParamError(f"{where}.{key} must be a non-empty string or null")
        values[key] = v
    t = cfg.get("request_timeout", s.request_timeout)
    if isinstance(t, bool) or not isinstance(t, int | float) or not 0.1 <= t <= 120:
        raise ActionParamError(f"{where}.request_timeout must be a number of seconds in "
                               f"[0.1, 120], got {t!r}")
    values["request_timeout"] = float(t)
    label = cfg.get("quarantine_label", s.quarantine_label)
    why = label_key_problem(label)
    if why:
        raise ActionParamError(f"{where}.quarantine_label must be {why}, got {label!r}")
    values["quarantine_label"] = label
    np_name = cfg.get("networkpolicy_name", s.networkpolicy_name)
    if not isinstance(np_name, str) or len(np_name) > 253 or not _SUBDOMAIN.fullmatch(np_name):
        raise ActionParamError(f"{where}.networkpolicy_name must be a lowercase DNS name, "
                               f"got {np_name!r}")
    values["networkpolicy_name"] = np_name
    fm = cfg.get("field_manager", s.field_manager)
    if not isinstance(fm, str) or not 0 < len(fm) <= 128 or not fm.isprintable():
        raise ActionParamError(f"{where}.field_manager must be 1-128 printable characters")
    values["field_manager"] = fm
    return K8sSettings(**values)


# ---------------------------------------------------------------------- pod lookups
def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, Mapping) else {}


def _controller(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ownerReference with ``controller: true`` (at most one per object)."""
    for ref in _meta(obj).get("ownerReferences") or ():
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            return ref
    return None


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or ():
        if isinstance(c, Mapping) and c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def _self_pod() -> tuple[str, str] | None:
    """The engine's own pod (downward API ``POD_NAMESPACE``/``POD_NAME``): never a target."""
    ns, name = os.environ.get("POD_NAMESPACE"), os.environ.get("POD_NAME")
    return (ns, name) if ns and name else None


class _PodAction:
    """What the three actions share: the client, target resolution, label patches."""

    name = ""
    reversible = False

    def __init__(self, client: K8sClient, log: logging.Logger) -> None:
        self.client = client
        self.log = log

    def _warm_up(self) -> None:
        try:
            self.client.warm_up()
        except ModuleNotFoundError as e:
            raise ActionParamError(str(e)) from None

    def _find(self, target: Target) -> tuple[dict[str, Any] | None, Outcome | None]:
        """The target's pod, or the Outcome that ends the action (no pod, another pod, gone)."""
        ns, name = target.k8s_ns, target.k8s_pod
        if not ns or not name:
            return None, Outcome("skipped", "the alert has no Kubernetes pod (k8s.ns.name, "
                                            "k8s.pod.name)")
        if _self_pod() == (ns, name):
            return None, Outcome("skipped", f"pod {ns}/{name} is the engine's own pod (protected)")
        try:
            pod = self.client.get_pod(ns, name)
        except K8sCallError as e:
            if e.status == 404:
                return None, Outcome("skipped", f"pod {ns}/{name} no longer exists")
            return None, Outcome("failed", str(e))
        uid = _meta(pod).get("uid")
        if target.k8s_pod_uid and uid != target.k8s_pod_uid:
            return None, Outcome("skipped", f"pod {ns}/{name} is another pod now (uid {uid}, the "
                                            f"alert's was {target.k8s_pod_uid})")
        return pod, None

    def _patch_labels(self, pod: dict[str, Any], labels: Mapping[str, str | None],
                      annotations: Mapping[str, str | None] | None = None,
                      ) -> tuple[dict[str, str | None], dict[str, str | None]]:
        """Patch labels (and annotations) under the pod's resourceVersion; on a conflict read
        again and retry once. Returns the previous values of the keys set."""
        md = _meta(pod)
        ns, name, uid = md.get("namespace"), md.get("name"), md.get("uid")
        for attempt in (1, 2):
            md = _meta(pod)
            old_l, old_a = md.get("labels") or {}, md.get("annotations") or {}
            patch: dict[str, Any] = {"metadata": {"resourceVersion": md.get("resourceVersion"),
                                                  "labels": dict(labels)}}
            if annotations:
                patch["metadata"]["annotations"] = dict(annotations)
            try:
                self.client.patch_pod(str(ns), str(name), patch)
            except K8sCallError as e:
                if e.status != 409 or attempt == 2:
                    raise
                pod = self.client.get_pod(str(ns), str(name))
                if _meta(pod).get("uid") != uid:
                    raise K8sCallError(f"pod {ns}/{name} was replaced while labelling it") from None
                continue
            return ({k: old_l.get(k) for k in labels},
                    {k: old_a.get(k) for k in (annotations or {})})
        raise AssertionError("unreachable")

    def _label_run(self, target: Target, labels: dict[str, str],
                   annotations: dict[str, str] | None, what: str,
                   before: Callable[[dict[str, Any]], str] | None = None) -> Outcome:
        pod, end = self._find(target)
        if end is not None:
            return end
        assert pod is not None
        md = _meta(pod)
        ns, name = md.get("namespace"), md.get("name")
        try:
            note = before(pod) if before else ""
            prev_l, prev_a = self._patch_labels(pod, labels, annotations)
        except K8sCallError as e:
            return Outcome("failed", str(e))
        shown = ",".join(f"{k}={v}" for k, v in labels.items())
        return Outcome("done", f"{what} pod {ns}/{name} ({shown}){note}",
                       undo={"namespace": ns, "pod": name, "uid": md.get("uid"),
                             "labels": labels, "previous_labels": prev_l,
                             "annotations": annotations or {}, "previous_annotations": prev_a})

    def undo(self, data: dict[str, Any]) -> Outcome:
        """Put back the previous values of the labels (and annotations) still as we set them."""
        try:
            ns, name, uid = str(data["namespace"]), str(data["pod"]), data.get("uid")
            labels, prev_l = dict(data["labels"]), dict(data["previous_labels"])
            ann, prev_a = dict(data.get("annotations") or {}), dict(data.get("previous_annotations") or {})
        except (KeyError, TypeError, ValueError):
            return Outcome("failed", f"{self.name}: malformed undo data")
        try:
            pod = self.client.get_pod(ns, name)
        except K8sCallError as e:
            if e.status == 404:
                return Outcome("skipped", f"pod {ns}/{name} no longer exists")
            return Outcome("failed", str(e))
        md = _meta(pod)
        if uid and md.get("uid") != uid:
            return Outcome("skipped", f"pod {ns}/{name} is another pod now")
        cur_l, cur_a = md.get("labels") or {}, md.get("annotations") or {}
        back_l = {k: prev_l.get(k) for k, v in labels.items() if cur_l.get(k) == v}
        back_a = {k: prev_a.get(k) for k, v in ann.items() if cur_a.get(k) == v}
        if not back_l and not back_a:
            return Outcome("done", f"pod {ns}/{name}: nothing to revert (labels changed since)")
        try:
            self._patch_labels(pod, back_l, back_a)
        except K8sCallError as e:
            return Outcome("failed", str(e))
        return Outcome("done", f"pod {ns}/{name}: reverted {', '.join(sorted(back_l))}")


# ---------------------------------------------------------------------- the actions
class LabelAction(_PodAction):
    """``label``: ``labels: {key: value, ...}`` on the alert's pod."""

    name = "label"
    reversible = True

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        check_known(params, {"labels", "ttl"}, "")
        self._warm_up()
        return {"labels": _labels_param(params.get("labels")), **_ttl(params)}

    def run(self, target: Target, alert: Alert, params: dict[str, Any]) -> Outcome:
        return self._label_run(target, params["labels"], None, "labelled")


def deny_all_policy(ns: str, name: str, label: str, value: str) -> dict[str, Any]:
    """The quarantine NetworkPolicy: selects the label, allows nothing in either direction."""
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns, "labels": dict(MANAGED_BY)},
            "spec": {"podSelector": {"matchLabels": {label: value}},
                     "policyTypes": ["Ingress", "Egress"]}}


def _is_deny_all_for(policy: Mapping[str, Any], label: str, value: str) -> bool:
    spec = policy.get("spec") or {}
    return (spec.get("podSelector") == {"matchLabels": {label: value}}
            and set(spec.get("policyTypes") or ()) == {"Ingress", "Egress"}
            and not spec.get("ingress") and not spec.get("egress"))


class QuarantineAction(_PodAction):
    """``quarantine``: the deny-all NetworkPolicy, then the quarantine label on the pod."""

    name = "quarantine"
    reversible = True

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        check_known(params, {"label", "value", "policy_name", "annotate", "ttl"}, "")
        self._warm_up()
        s = self.client.settings
        label = params.get("label", s.quarantine_label)
        why = label_key_problem(label)
        if why:
            raise ActionParamError(f"label must be {why}, got {label!r}")
        value = params.get("value", "true")
        why = label_value_problem(value)
        if why:
            raise ActionParamError(f"value must be {why}, got {value!r}")
        pname = params.get("policy_name", s.networkpolicy_name)
        if not isinstance(pname, str) or len(pname) > 253 or not _SUBDOMAIN.fullmatch(pname):
            raise ActionParamError(f"policy_name must be a lowercase DNS name, "
                                   f"got {pname!r}")
        return {"label": label, "value": value, "policy_name": pname,
                "annotate": flag(params, "annotate", True, ""), **_ttl(params)}

    def _ensure_policy(self, ns: str, params: dict[str, Any]) -> str:
        """Create the policy unless it exists with exactly our spec; returns a note for the
        audit detail. Another spec under the name is an error: we never rewrite it."""
        name, label, value = params["policy_name"], params["label"], params["value"]
        existing = self.client.get_networkpolicy(ns, name)
        if existing is None:
            try:
                self.client.create_networkpolicy(ns, deny_all_policy(ns, name, label, value))
                return f"; NetworkPolicy {ns}/{name} created"
            except K8sCallError as e:
                if e.status != 409:          # 409 AlreadyExists: another worker won the race
                    raise
                existing = self.client.get_networkpolicy(ns, name)
        if existing is None or not _is_deny_all_for(existing, label, value):
            raise K8sCallError(f"NetworkPolicy {ns}/{name} exists but is not a deny-all policy "
                               f"selecting {label}={value}; not changed, pod not labelled")
        return f"; NetworkPolicy {ns}/{name} present"

    def run(self, target: Target, alert: Alert, params: dict[str, Any]) -> Outcome:
        ann = {REASON_ANNOTATION: alert.rule[:256]} if params["annotate"] else None
        ns = target.k8s_ns or ""
        return self._label_run(target, {params["label"]: params["value"]}, ann, "quarantined",
                               before=lambda _pod: self._ensure_policy(ns, params))


class DeletePodAction(_PodAction):
    """``delete_pod`` with the static/DaemonSet/minimum-healthy-replicas guards."""

    name = "delete_pod"
    reversible = False

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        known = {"allow_daemonset", "allow_static", "min_healthy_replicas", "grace_period_seconds"}
        check_known(params, known, "")
        self._warm_up()
        return {"allow_daemonset": flag(params, "allow_daemonset", False, ""),
                "allow_static": flag(params, "allow_static", False, ""),
                "min_healthy_replicas": _min_healthy(params.get("min_healthy_replicas", 1)),
                "grace_period_seconds": number(params, "grace_period_seconds", None, 0, 86_400,
                                               "", integer=True)}

    def _available(self, ns: str, ref: Mapping[str, Any]) -> tuple[str, int, int]:
        """(who, available replicas, desired replicas) of the pod's controller; a Deployment
        counts across its ReplicaSets (a rollout's old and new pods are all its replicas)."""
        kind, name = str(ref.get("kind")), str(ref.get("name"))
        if kind not in ("ReplicaSet", "StatefulSet", "DaemonSet"):
            return f"{kind} {name} (not a controller the guard knows)", 0, 1
        owner = self.client.get_owner(kind, ns, name)
        if kind == "ReplicaSet":
            dep = _controller(owner)
            if dep is not None and dep.get("kind") == "Deployment":
                kind, name = "Deployment", str(dep.get("name"))
                owner = self.client.get_owner(kind, ns, name)
        st = owner.get("status") or {}
        if kind == "DaemonSet":
            available, desired = st.get("numberAvailable", 0), st.get("desiredNumberScheduled", 1)
        else:
            available = st.get("availableReplicas", st.get("readyReplicas", 0))
            desired = (owner.get("spec") or {}).get("replicas", 1)     # the API's default is 1
        return f"{kind} {name}", _count(available), _count(desired)

    def _guard(self, pod: dict[str, Any], params: dict[str, Any]) -> str | None:
        """Why the pod must not be deleted, or ``None``. Raises K8sCallError (cannot verify)."""
        md = _meta(pod)
        ref = _controller(pod)
        static = MIRROR_ANNOTATION in (md.get("annotations") or {}) or (
            ref is not None and ref.get("kind") == "Node")
        if static and not params["allow_static"]:
            return "a static (mirror) pod; allow_static: true to delete it"
        if ref is not None and ref.get("kind") == "DaemonSet" and not params["allow_daemonset"]:
            return f"owned by DaemonSet {ref.get('name')}; allow_daemonset: true to delete it"
        spec = params["min_healthy_replicas"]
        if spec in (0, "0%"):
            return None
        if ref is None or static:
            who, available, desired = "no controller", 0, 1
        else:
            who, available, desired = self._available(str(md.get("namespace")), ref)
        want = spec if isinstance(spec, int) else math.ceil(int(spec[:-1]) * desired / 100)
        others = max(0, available - (1 if _pod_ready(pod) else 0))
        if others < want:
            shown = spec if isinstance(spec, int) else f"{spec} of {desired} = {want}"
            return (f"{who}: {others} other available replica(s), min_healthy_replicas is "
                    f"{shown}")
        return None

    def run(self, target: Target, alert: Alert, params: dict[str, Any]) -> Outcome:
        if target.k8s_ns and target.k8s_pod and not target.k8s_pod_uid:
            # irreversible: only the very pod that alerted, identified by its uid
            return Outcome("skipped", f"pod {target.k8s_ns}/{target.k8s_pod}: the alert has no "
                                      "k8s.pod.uid, so the pod cannot be identified for delete")
        pod, end = self._find(target)
        if end is not None:
            return end
        assert pod is not None
        md = _meta(pod)
        ns, name, uid = str(md.get("namespace")), str(md.get("name")), str(md.get("uid"))
        try:
            why = self._guard(pod, params)
            if why:
                return Outcome("skipped", f"pod {ns}/{name} not deleted: {why}")
            self.client.delete_pod(ns, name, uid, params["grace_period_seconds"])
        except K8sCallError as e:
            if e.status == 404:
                return Outcome("skipped", f"pod {ns}/{name} no longer exists")
            if e.status == 409:
                return Outcome("skipped", f"pod {ns}/{name} is another pod now (uid precondition)")
            return Outcome("failed", str(e))
        return Outcome("done", f"deleted pod {ns}/{name}")

    def undo(self, data: dict[str, Any]) -> Outcome:
        return Outcome("failed", "delete_pod cannot be undone (the controller, if any, "
                                 "recreates the pod)")


def k8s_actions(cfg: dict[str, Any] | None, log: logging.Logger) -> list[Action]:
    """The Kubernetes family, sharing one lazily built client (``plugins.response.k8s``)."""
    client = K8sClient(parse_settings(cfg))
    return [LabelAction(client, log), QuarantineAction(client, log), DeletePodAction(client, log)]
