#!/usr/bin/env python3
"""Container plugin ``k8s_api`` benchmark; prints JSON.

- ``parse_ns``: the container parser per event, warm cache, with and without ``k8s_api`` (the
  API side adds one check of the watcher's outbox per event).
- ``extract_ns``: ``k8s.pod.label[app]`` (API hit), ``k8s.pod.labels`` (merged string) and
  ``k8s.ns.label[team]`` per extraction.
- ``initial_sync_ms``: start of the watcher → all pods of the node in the table, for N pods,
  through the real ``kubernetes`` client against the protocol-level stand-in API server of
  ``plugins/falconet-container/tests/k8s_apiserver.py`` on 127.0.0.1 (not a real cluster).
- ``watch_event_to_field_ms``: a pod relabelled on the server → the new label visible to the
  next event's field (watch stream + client deserialisation + drain), median/max over rounds.

usage: bench_container_k8s.py [--events N] [--pods N] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

from falconet.events import Event
from falconet.fields import FieldRegistry
from falconet.state.tables import ThreadInfo
from falconet_container.enricher import ContainerEnricher
from falconet_container.fields import field_defs
from falconet_container.k8s_api import K8sApiConfig, K8sWatcher
from falconet_container.model import ContainerInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "falconet-container"
                       / "tests"))
from k8s_apiserver import FakeApiServer  # noqa: E402

CID = "ab" * 32
UID = "1f0c2d3e-aaaa-bbbb-cccc-0123456789ab"


def enricher(with_api: bool) -> tuple[ContainerEnricher, FieldRegistry, Event]:
    enr = ContainerEnricher()
    if with_api:
        enr.k8s_api = True
        enr.k8s_updates = deque()
        enr.k8s.apply({"pods": [{"uid": UID, "name": "web-0", "namespace": "shop",
                                 "labels": {"app": "web", "tier": "front"}, "ip": "10.0.0.7"}]})
        enr.k8s.apply({"namespaces": {"shop": {"team": "payments"}}})
    enr.containers[CID] = ContainerInfo(CID, type="containerd", k8s_pod_uid=UID,
                                        k8s_pod_name="web-0", k8s_ns_name="shop",
                                        k8s_pod_labels={"app": "web"}, status="resolved")
    enr.pid_cid[100] = CID
    reg = FieldRegistry()
    reg.register_all(field_defs(enr))
    evt = Event("syscall", "openat", 1, tid=100, pid=100, args={})
    evt.thread = ThreadInfo(tid=100, pid=100, container_id=CID)
    return enr, reg, evt


def per_call_ns(fn, n: int) -> float:
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter_ns() - t0) / n)
    return round(best, 1)


def bench_hot(n: int) -> dict:
    out: dict = {"parse_ns": {}, "extract_ns": {}}
    for with_api in (False, True):
        enr, reg, evt = enricher(with_api)
        parse = enr.parse
        out["parse_ns"]["with_k8s_api" if with_api else "without"] = per_call_ns(
            lambda parse=parse, evt=evt: parse(evt), n)
    enr, reg, evt = enricher(True)
    for name, arg in (("k8s.pod.label", "app"), ("k8s.pod.labels", None),
                      ("k8s.ns.label", "team"), ("k8s.pod.name", None)):
        fdef, _ = reg.lookup(name, arg)
        ex = fdef.make_extractor(arg)            # raw: the registry's per-event cache bypassed
        key = f"{name}[{arg}]" if arg else name
        out["extract_ns"][key] = per_call_ns(lambda ex=ex: ex(evt), n)
    return out


def bench_api(pods: int, rounds: int) -> dict:
    api = FakeApiServer().start()
    api.add_namespace("shop", {"team": "payments"})
    uids = [api.add_pod(f"web-{i}", "shop", "node-a", {"app": "web", "i": str(i)})
            for i in range(pods)]
    kc = api.write_kubeconfig(Path(tempfile.mkdtemp()) / "kubeconfig")
    enr, reg, evt = enricher(False)
    enr.containers[CID].k8s_pod_uid = uids[0]
    enr.k8s_api = True
    w = K8sWatcher(K8sApiConfig(enabled=True, kubeconfig=str(kc), node_name="node-a"))
    enr.k8s_updates = w.updates
    label = reg.lookup("k8s.pod.label", "i")[0].make_extractor("i")   # uncached
    try:
        t0 = time.perf_counter()
        w.start()
        while len(enr.k8s.pods) < pods:
            enr.parse(evt)
            time.sleep(0.0005)
        initial = (time.perf_counter() - t0) * 1000
        while api.active_watches < 2:
            time.sleep(0.001)
        lat = []
        for r in range(rounds):
            want = f"r{r}"
            t0 = time.perf_counter()
            api.set_pod_labels(uids[0], {"app": "web", "i": want})
            while True:
                enr.parse(evt)
                if label(evt) == want:
                    break
                time.sleep(0.0002)
            lat.append((time.perf_counter() - t0) * 1000)
    finally:
        w.stop()
        api.stop()
    return {"pods": pods, "initial_sync_ms": round(initial, 1),
            "watch_event_to_field_ms": {"median": round(statistics.median(lat), 2),
                                        "max": round(max(lat), 2), "rounds": rounds}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--pods", type=int, default=110)
    ap.add_argument("--rounds", type=int, default=20)
    a = ap.parse_args()
    out = {"bench": "container_k8s_api", **bench_hot(a.events),
           "api_stand_in": bench_api(a.pods, a.rounds)}
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
