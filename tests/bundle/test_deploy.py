"""docker-compose.yml (Debian's docker-compose 1.29 `config -q`), the Dockerfile, the Kubernetes
manifests (kubernetes-validate schemas, strict), and the falconet.yaml files they ship (validated
by the engine's own config loader)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from bundle_support import COMPOSE, K8S, REPO, load_yaml_docs
from conftest import need, need_binary

K8S_VERSION = "1.30.0"


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _compose_config(path: Path) -> subprocess.CompletedProcess[str]:
    dc = need_binary("docker-compose")
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent.sock"}
    return subprocess.run([dc, "-f", str(path), "config", "-q"], capture_output=True, text=True,
                          timeout=60, env=env, cwd=path.parent)


def test_docker_compose_accepts_the_file() -> None:
    r = _compose_config(COMPOSE)
    assert r.returncode == 0, r.stdout + r.stderr


def test_docker_compose_rejects_a_broken_file(tmp_path: Path) -> None:
    """Negative control: the same command fails on an invalid service key."""
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(COMPOSE.read_text().replace("    pid: host\n", "    pid: host\n    no_such_key: 1\n"))
    r = _compose_config(bad)
    assert r.returncode != 0 and "no_such_key" in r.stdout + r.stderr


def test_compose_spec_schema_accepts_the_file(tmp_path: Path) -> None:
    """The Compose Specification (what `docker compose` v2 reads), via check-jsonschema's vendored
    schema (offline), with a negative control."""
    cj = Path(sys.executable).parent / "check-jsonschema"
    need(cj.exists(), "check-jsonschema is not installed (pip install check-jsonschema)")
    cmd = [str(cj), "--builtin-schema", "vendor.compose-spec"]
    r = subprocess.run([*cmd, str(COMPOSE)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(COMPOSE.read_text().replace("    pid: host\n", "    pid: host\n    privilegd: true\n"))
    r = subprocess.run([*cmd, str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "privilegd" in r.stdout + r.stderr


def test_compose_images_are_pinned_and_ports_local() -> None:
    services = compose()["services"]
    expected = {"falconet", "otel-collector", "prometheus", "alertmanager", "loki", "tempo", "grafana"}
    assert expected <= set(services)
    for name, svc in services.items():
        image = svc["image"]
        tag = image.rsplit(":", 1)[-1] if ":" in image.split("/")[-1] else ""
        assert tag and tag != "latest" and re.search(r"\d", tag), f"{name}: pin the image ({image})"
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: publish on 127.0.0.1 only ({port})"


def test_compose_bind_mounts_exist() -> None:
    for name, svc in compose()["services"].items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("./"):
                assert (REPO / src).exists(), f"{name}: {src} does not exist"


def test_compose_falconet_has_what_ebpf_needs() -> None:
    svc = compose()["services"]["falconet"]
    assert svc["privileged"] is True and svc["pid"] == "host"
    targets = {v.split(":")[1] for v in svc["volumes"]}
    assert {"/sys/kernel/debug", "/lib/modules", "/usr/src", "/sys/fs/cgroup", "/var/run/docker.sock",
            "/run/containerd"} <= targets
    assert "ports" not in svc, "the engine's metrics stay on the compose network"
    env = svc["environment"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"


def test_dockerfile_copies_existing_paths() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM debian:bookworm", text, re.M)
    assert "python3-bpfcc" in text and "--system-site-packages" in text
    for m in re.finditer(r"^COPY\s+(?!--)(.+?)\s+\S+$", text, re.M):
        for src in m.group(1).split():
            if src == "README.md":        # the core area's README (required by pyproject's readme)
                continue
            assert (REPO / src.rstrip("/")).exists(), f"Dockerfile copies missing {src}"
    ignore = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignore and ".git" in ignore


@pytest.mark.parametrize("path", [REPO / "deploy" / "compose" / "falconet.yaml", "k8s"],
                         ids=["compose", "kubernetes"])
def test_shipped_falconet_config_is_valid(path: Path | str, tmp_path: Path) -> None:
    """The engine's own loader accepts the falconet.yaml of compose and of the DaemonSet."""
    import falconet.config as config  # noqa: PLC0415
    if path == "k8s":
        cm = yaml.safe_load((K8S / "falconet-config.yaml").read_text())
        path = tmp_path / "falconet.yaml"
        path.write_text(cm["data"]["falconet.yaml"])
    cfg = config.load_config(str(path))
    assert cfg.get("metrics.address") == "0.0.0.0" and cfg.get("metrics.port") == 8765
    assert cfg.get("plugins.otel.service_name") == "falconet"


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for f in sorted(K8S.glob("*.yaml")):
        for d in load_yaml_docs(f):
            docs.append((f.name, d))
    return docs


def test_kubernetes_manifests_are_valid_against_the_api_schema() -> None:
    try:
        import kubernetes_validate  # noqa: PLC0415
    except ImportError:
        kubernetes_validate = None
    need(kubernetes_validate is not None, "kubernetes-validate is not installed (pip install it)")
    checked = 0
    for name, doc in k8s_documents():
        if doc["kind"] in ("Kustomization", "ServiceMonitor"):      # CRDs: checked below
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{name}: {doc['kind']} {doc['metadata']['name']}: {e.message} at {list(e.path)}")
        checked += 1
    assert checked >= 15          # incl. falconet-response-rbac.yaml and alert-relay's NetworkPolicy


def test_kubernetes_schema_check_rejects_a_typo() -> None:
    import_ok = True
    try:
        import kubernetes_validate  # noqa: PLC0415
    except ImportError:
        import_ok = False
    need(import_ok, "kubernetes-validate is not installed")
    ds = falconet_daemonset()
    ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilitys"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, K8S_VERSION, strict=True)


def falconet_daemonset() -> dict[str, Any]:
    return next(d for _, d in k8s_documents()
                if d["kind"] == "DaemonSet" and d["metadata"]["name"] == "falconet")


def test_kustomization_lists_every_manifest() -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kust["resources"]) == files


def test_servicemonitor_selects_the_falconet_service() -> None:
    docs = dict((d["kind"], d) for _, d in k8s_documents())
    sm, svc = docs["ServiceMonitor"], next(d for _, d in k8s_documents()
                                           if d["kind"] == "Service" and d["metadata"]["name"] == "falconet")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"][0]["port"] in {p["name"] for p in svc["spec"]["ports"]}
    # the job label defaults to the service name: the alert rules select job="falconet"
    assert svc["metadata"]["name"] == "falconet"


def test_daemonset_least_privilege_and_probes() -> None:
    ds = falconet_daemonset()
    spec = ds["spec"]["template"]["spec"]
    assert spec["hostPID"] is True and not spec.get("hostNetwork")
    c = spec["containers"][0]
    sc = c["securityContext"]
    assert sc["privileged"] is False and sc["capabilities"]["drop"] == ["ALL"]
    caps = set(sc["capabilities"]["add"])
    assert {"BPF", "PERFMON", "SYS_PTRACE", "SYS_RESOURCE"} <= caps and "SYS_ADMIN" not in caps
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["livenessProbe"]["httpGet"]["port"] in {p["name"] for p in c["ports"]}
    assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/sys/kernel/debug", "/lib/modules", "/usr/src", "/sys/fs/cgroup", "/run/containerd"} <= mounts
    annotations = ds["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == "8765"


def test_response_rbac_is_least_privilege_and_bound_to_the_engine() -> None:
    """falconet-response-rbac.yaml grants exactly what the Kubernetes response actions call
    (plugins/falconet-response/tests/test_k8s_actions.py checks the calls against it) to the
    DaemonSet's service account, and no list/watch/update or other resources."""
    docs = [d for f, d in k8s_documents() if f == "falconet-response-rbac.yaml"]
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    grants = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"]
              for r in rule["resources"] for v in rule["verbs"]}
    assert grants == {("", "pods", "get"), ("", "pods", "patch"), ("", "pods", "delete"),
                      *{("apps", r, "get") for r in ("replicasets", "deployments",
                                                     "statefulsets", "daemonsets")},
                      ("networking.k8s.io", "networkpolicies", "get"),
                      ("networking.k8s.io", "networkpolicies", "create")}
    binding = next(d for d in docs if d["kind"] == "ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": role["metadata"]["name"]}
    ds = falconet_daemonset()
    assert binding["subjects"] == [{"kind": "ServiceAccount",
                                    "name": ds["spec"]["template"]["spec"]["serviceAccountName"],
                                    "namespace": "falconet"}]
    env = {e["name"]: e for e in ds["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"


# ------------------------------------------------------------------- the alert relay (issue 11)

def _k8s(kind: str, name: str) -> dict[str, Any]:
    return next(d for _, d in k8s_documents() if d["kind"] == kind and d["metadata"]["name"] == name)


def test_only_the_collector_gateway_reaches_the_alert_relay() -> None:
    """The relay's NetworkPolicy selects the relay's pods and admits exactly the gateway's pods,
    on the relay's port: no namespace selector, no ipBlock, no other rule."""
    pol = _k8s("NetworkPolicy", "alert-relay")
    relay = _k8s("Deployment", "alert-relay")
    gateway = _k8s("Deployment", "otel-gateway")
    relay_labels = relay["spec"]["template"]["metadata"]["labels"]
    assert pol["spec"]["podSelector"]["matchLabels"].items() <= relay_labels.items()
    assert pol["spec"]["policyTypes"] == ["Ingress"]
    [rule] = pol["spec"]["ingress"]
    [peer] = rule["from"]
    assert set(peer) == {"podSelector"}, "same namespace, pods only"
    assert peer["podSelector"]["matchLabels"].items() <= \
        gateway["spec"]["template"]["metadata"]["labels"].items()
    assert not peer["podSelector"]["matchLabels"].items() <= relay_labels.items()
    port = relay["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    assert rule["ports"] == [{"port": port, "protocol": "TCP"}]


def test_schema_check_rejects_a_broken_network_policy() -> None:
    """Negative control for the NetworkPolicy's schema validation."""
    try:
        import kubernetes_validate  # noqa: PLC0415
    except ImportError:
        kubernetes_validate = None
    need(kubernetes_validate is not None, "kubernetes-validate is not installed")
    pol = _k8s("NetworkPolicy", "alert-relay")
    kubernetes_validate.validate(pol, K8S_VERSION, strict=True)
    bad = {**pol, "spec": {**pol["spec"], "ingres": pol["spec"]["ingress"]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_relay_token_is_wired_to_relay_and_collector() -> None:
    """One optional token: the relay and the collector read the same variable (compose) or Secret
    (Kubernetes), and the collector's escalation exporter sends it as a bearer token."""
    services = compose()["services"]
    relay = services["alert-relay"]
    assert relay["ports"] == ["127.0.0.1:4319:4319"]
    for name in ("alert-relay", "otel-collector"):
        assert services[name]["environment"]["ALERT_RELAY_TOKEN"] == "${ALERT_RELAY_TOKEN:-}"
    cfg = yaml.safe_load((REPO / "otel-collector" / "config.yaml").read_text())
    assert cfg["exporters"]["otlp_http/escalation"]["headers"] == {
        "Authorization": "Bearer ${env:ALERT_RELAY_TOKEN:-}"}
    for kind, name in (("Deployment", "alert-relay"), ("Deployment", "otel-gateway")):
        env = {e["name"]: e for e in _k8s(kind, name)["spec"]["template"]["spec"]["containers"][0]["env"]}
        ref = env["ALERT_RELAY_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "alert-relay-token", "key": "token", "optional": True}, name
