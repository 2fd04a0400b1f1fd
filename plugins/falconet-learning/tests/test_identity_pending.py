"""A container's first execs run before the container plugin has resolved its image: the learner
holds what it saw meanwhile and learns it once the identity resolves, so a workload's start-up
commands (busybox ``httpd`` started by the entrypoint) are part of its profile and not "never
seen" on the next start (the flake of tests/learning/test_learning_live.py's restart case).

A unit test with stand-in threads and a stand-in identity source; the live test runs the real
container plugin."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from falconet_learning import learner as L
from falconet_learning.config import LearningConfig
from falconet_learning.learner import Learner

S = 1_000_000_000
CID = "c0ffee00c0ffee00c0ffee00c0ffee00"


class Identity:
    """The container plugin's image fields, unresolved until ``resolved`` is set."""

    def __init__(self) -> None:
        self.resolved = False

    def fields(self) -> tuple[Any, ...]:
        def repo(evt: Any) -> str | None:
            return "busybox-local" if self.resolved else None

        def tag(evt: Any) -> str | None:
            return "web" if self.resolved else None

        def none(evt: Any) -> None:
            return None
        return (repo, tag, none, none, none)


def thread(pid: int, ptid: int, exe: str) -> SimpleNamespace:
    return SimpleNamespace(pid=pid, tid=pid, ptid=ptid, container_id=CID, exepath="/bin/busybox",
                           exe=exe, comm="exe", cwd="/")


def execve(t: SimpleNamespace, ts: int) -> SimpleNamespace:
    return SimpleNamespace(thread=t, type="execve", res=0, ts=ts, cache={}, fdinfo=None, args={})


def learner(tmp: Path, ident: Identity, **kw: Any) -> Learner:
    lr = Learner(LearningConfig(state_dir=str(tmp), learning_seconds=10, learning_events=1,
                                quarantine_seconds=0, **kw))
    lr._img = ident.fields()
    init = thread(1, 0, "sh")
    lr._state = SimpleNamespace(threads={1: init})
    return lr


def test_execs_before_the_identity_resolves_are_learned(tmp_path: Path) -> None:
    ident = Identity()
    lr = learner(tmp_path, ident)
    lr.parse(execve(thread(9, 1, "httpd"), 1 * S))        # image not known yet
    assert not lr.profiles and lr.counts["identity_held"] == 2
    ident.resolved = True
    lr.parse(execve(thread(10, 1, "wget"), 2 * S))
    (p,) = lr.profiles.values()
    assert p.identity == "image:busybox-local:web"
    learned = p.pending["proc"] | p.sets["proc"]
    assert learned == {"/bin/busybox[httpd]", "/bin/busybox[wget]"}
    assert "/bin/busybox[sh]\0/bin/busybox[httpd]" in p.pending["spawn"] | p.sets["spawn"]
    assert not lr._held                       # handed over, not kept


def test_held_observations_are_bounded_and_counted(tmp_path: Path) -> None:
    ident = Identity()
    lr = learner(tmp_path, ident)
    n = L.HELD_PER_CONTAINER // 2 + 5            # two observations per exec
    for i in range(n):
        lr.parse(execve(thread(100 + i, 1, f"app{i}"), (1 + i) * S))
    assert lr.counts["identity_held"] == L.HELD_PER_CONTAINER
    assert lr.counts["identity_held_dropped"] == 2 * n - L.HELD_PER_CONTAINER


def test_a_repeated_observation_is_held_once_and_counts_as_its_events(tmp_path: Path) -> None:
    """A busy workload repeats its few execs while its identity is pending (a bare runc bundle's
    never resolves): each distinct observation takes one place, so repetition is no drop."""
    ident = Identity()
    lr = learner(tmp_path, ident)
    n = 3 * L.HELD_PER_CONTAINER
    for i in range(n):
        lr.parse(execve(thread(100 + i, 1, "counter"), (1 + i) * S))
    assert lr.counts["identity_held_dropped"] == 0
    assert lr.counts["identity_held"] == 2 * n             # every one still an event
    assert len(lr._held[CID]) == 2                         # the exec and the spawn, once each
    ident.resolved = True
    lr.parse(execve(thread(9, 1, "wget"), (n + 2) * S))
    (p,) = lr.profiles.values()
    assert p.events >= 2 * n                               # the held repetitions were ticked
    assert "/bin/busybox[counter]" in p.pending["proc"] | p.sets["proc"]
