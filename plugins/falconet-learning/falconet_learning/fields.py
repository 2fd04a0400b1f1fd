"""``profile.*`` field declarations. Extractors are bound methods of the engine's learner: per
event one dict lookup (the workload's profile) and one or two set lookups."""

from __future__ import annotations

from typing import Any

from falconet.fields import FieldDef, FieldType

from falconet_learning import PLUGIN_NAME
from falconet_learning.learner import Learner


def field_defs(learner: Learner) -> list[FieldDef]:
    prof = learner.profile_of_event

    def attribute(name: str) -> Any:
        def extract(evt: Any, _name: str = name) -> str | None:
            p = prof(evt)
            return getattr(p, _name) if p is not None else None
        return extract
    state, pid, identity, kind = (attribute(n) for n in ("state", "id", "identity", "kind"))

    def f(name: str, typ: FieldType, desc: str, fn: Any) -> FieldDef:
        # no per-event value cache: each lookup is cheaper than the cache's own dict work, and
        # the exec fields share one memo of the event's exec facts
        def make(_arg: str | None, _fn: Any = fn) -> Any:
            return _fn
        return FieldDef(name, typ, desc, make, provider=PLUGIN_NAME, cache=False)

    B, S = FieldType.BOOL, FieldType.STRING
    return [
        f("profile.state", S, "The state of the event's workload profile: learning or ready "
          "(missing when the process has no profile, e.g. a container whose image is not "
          "known yet).", state),
        f("profile.id", S, "The id of the event's workload profile (falconet profiles list).", pid),
        f("profile.identity", S, "The workload identity of the profile: image:<repo>:<tag>[@digest] "
          "(k8s:<ns>/<workload> first when known) or host:<executable>.", identity),
        f("profile.kind", S, "container or host (the kind of workload of the profile).", kind),
        f("profile.proc.new", B, "execve: true when this executable never ran in the workload "
          "(host processes: never run by this parent executable) while its profile learned; "
          "false while the profile is learning.", learner.proc_new),
        f("profile.spawn.new", B, "execve: true when this parent->child executable edge is new "
          "for the workload; false while the profile is learning.",
          learner.spawn_new),
        f("profile.file.new", B, "open: true when the path class (docs/learning.md) was never "
          "opened in this mode (read/write) by the workload; false while learning.",
          learner.file_new),
        f("profile.net.new", B, "connect: true when the workload never connected to this "
          "address and port; false while learning.", learner.net_new),
        f("profile.listen.new", B, "listen: true when the workload never listened on this port; "
          "false while learning.", learner.listen_new),
    ]
