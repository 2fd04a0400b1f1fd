"""Built-in plugin "core-state": process/fd state and the core field families.

Hooks: ``falconet_configure`` (table limits), ``falconet_fields`` (evt/proc/thread/user/group/fd),
``falconet_event_parsers`` (the state parser), ``falconet_start`` (bootstrap from ``/proc`` when the
source is live: ``engine.extras["falconet.live"]``), ``falconet_capture_state`` /
``falconet_restore_state`` (the whole thread + fd table and the user/group names, so a replay sees
the state the live run saw and never reads the replaying host's ``/proc``).

Configuration (``plugins: {core-state: {...}}`` in falconet.yaml):

=====================  ==========  =======================================================
key                    default     meaning
=====================  ==========  =======================================================
max_threads            262144      thread table cap; beyond it the oldest entries are
                                   evicted (counted: ``falconet_drops_total{cause="state_evicted"}``)
max_dead               4096        exited processes kept for their children's ancestor chain
dead_grace_seconds     5           how long (event time) an exited process is kept
bootstrap              true        read ``/proc`` at start in live mode
read_env               true        read ``/proc/<pid>/environ`` at bootstrap (``proc.env``)
user_check_seconds     10          how often ``/etc/passwd``/``/etc/group`` mtimes are checked
sweep_seconds          30          live: how often entries of processes that are gone from
                                   ``/proc`` (their exit event was dropped) are marked dead
dns_refresh_seconds    10          names of ``fd.*ip.name`` conditions are resolved again this
                                   long after their addresses changed...
dns_max_refresh_...    320         ...doubling while the answer stays the same, up to this
                                   (``dns_max_refresh_seconds``; failures retry after 1 s,
                                   doubling to the same bound; see ``falconet.state.dns``)
dns_startup_wait_...   2           replay only: wait at most this long at start for the first
                                   answers (``dns_startup_wait_seconds``; 0: don't wait); live
                                   never waits
=====================  ==========  =======================================================
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from falconet.api import ConfigSchema, PluginConfigError, Setting, hookimpl
from falconet.plugin_config import boolean, check_or_raise, number, positive_integer
from falconet.state.container_users import ContainerUsers
from falconet.state.dns import DomainResolver
from falconet.state.fields import core_field_defs
from falconet.state.parser import StateParser
from falconet.state.proc_bootstrap import BootstrapStats, bootstrap
from falconet.state.tables import StateTables, thread_from_dict, thread_to_dict
from falconet.state.users import UserDB

NAME = "core-state"
CAPTURE_VERSION = 1

_DEFAULTS: dict[str, Any] = {"max_threads": 262144, "max_dead": 4096, "dead_grace_seconds": 5.0,
                             "bootstrap": True, "read_env": True, "user_check_seconds": 10.0,
                             "sweep_seconds": 30.0, "dns_refresh_seconds": 10.0,
                             "dns_max_refresh_seconds": 320.0, "dns_startup_wait_seconds": 2.0}


class CoreState:
    """Everything the plugin owns for one engine (kept by :class:`CoreStatePlugin`)."""

    def __init__(self, engine: Any, config: dict[str, Any] | None = None) -> None:
        cfg = validate_config(config or {})
        self.config = cfg
        tables = getattr(engine, "state", None)
        if not isinstance(tables, StateTables):
            tables = StateTables()
            if engine is not None:
                engine.state = tables
        tables.max_threads = cfg["max_threads"]
        tables.max_dead = cfg["max_dead"]
        tables.dead_grace_ns = int(cfg["dead_grace_seconds"] * 1e9)
        self.tables = tables
        self.users = UserDB(check_interval=cfg["user_check_seconds"])
        metrics = getattr(engine, "metrics", None)
        # a container process's names come from the container's files (issue 17); frozen until
        # falconet_start says the source is live: a replay's pids are not this host's processes
        self.users.containers = ContainerUsers(check_interval=cfg["user_check_seconds"],
                                               metrics=metrics, plugin_name=NAME, frozen=True)
        # names of fd.*ip.name conditions: registered by the compiler, resolved in a thread
        # from falconet_start on (commands that only load rules, e.g. `rules validate`, never
        # look a name up)
        self.dns = DomainResolver(metrics, refresh_seconds=cfg["dns_refresh_seconds"],
                                  max_refresh_seconds=cfg["dns_max_refresh_seconds"],
                                  autostart=False)
        self.parser = StateParser(tables, live=False, metrics=metrics, users=self.users,
                                  emit_state=getattr(engine, "emit_state", None), plugin_name=NAME)
        self.bootstrap_stats: BootstrapStats | None = None
        self.swept = 0
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None
        if metrics is not None:
            prev = metrics.gauges.get("state_table_entries")

            def sizes(_prev: Any = prev, _t: StateTables = self.tables) -> dict[str, float]:
                out = dict(_prev()) if _prev is not None else {}
                out.update({k: float(v) for k, v in _t.sizes().items()})
                return out
            metrics.gauges["state_table_entries"] = sizes

    # ------------------------------------------------------------------------------ sweeping
    def sweep(self, proc: str = "/proc", min_age_ns: int = 5_000_000_000) -> int:
        """Mark dead the entries whose task is gone from ``/proc`` (a dropped ``procexit``);
        the hot loop's reclaim then frees them. Entries younger than ``min_age_ns`` are left
        alone (their fork may still be in flight). Returns how many were marked."""
        tables, now, n = self.tables, time.time_ns(), 0
        for t in list(tables.threads.values()):
            if t.dead or now - t.start_ts < min_age_ns:
                continue
            if not os.path.exists(f"{proc}/{t.tid}"):
                # only mark: removal stays on the hot loop (reclaim), the one writer of the dict
                t.dead, t.exit_ts = True, now
                tables.dead.append((now, t.tid))
                n += 1
        self.swept += n
        return n

    def start_sweeper(self) -> None:
        interval = float(self.config["sweep_seconds"])

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.sweep()
                except Exception:  # noqa: BLE001 - a failed sweep is retried next time
                    pass
        self._sweeper = threading.Thread(target=loop, name="core-state-sweeper", daemon=True)
        self._sweeper.start()

    def stop(self) -> None:
        self._stop.set()
        self.dns.stop()
        if self._sweeper is not None:
            self._sweeper.join(2)
            self._sweeper = None

    # ------------------------------------------------------------------------------ capture
    def capture(self) -> dict[str, Any]:
        return {"version": CAPTURE_VERSION, "snapshot": True,
                "threads": [thread_to_dict(t) for t in list(self.tables.threads.values())],
                **self.users.dump()}

    def restore(self, data: Any) -> None:
        """Load a snapshot (``snapshot: true`` replaces the tables) or an incremental record
        (threads learnt from /proc during the recording)."""
        if not isinstance(data, dict):
            raise ValueError(f"core-state record must be an object, got {type(data).__name__}")
        tables = self.tables
        if data.get("snapshot"):
            tables.clear()
        loaded = [thread_from_dict(d) for d in data.get("threads") or ()]
        for t in loaded:
            tables.add(t)
            if t.dead and t.tid == t.pid:
                tables.dead.append((t.exit_ts, t.tid))
        for t in loaded:                      # threads share their process's fd table
            if t.tid != t.pid:
                m = tables.threads.get(t.pid)
                if m is not None:
                    t.fds = m.fds
        if "users" in data or "groups" in data or "container_users" in data:
            self.users.load(data)


def _schema() -> ConfigSchema:
    def check(key: str, default: Any) -> Any:
        if isinstance(default, bool):
            return boolean()
        if isinstance(default, int):
            return positive_integer()
        # 0 turns the replay's DNS wait off; other intervals must stay positive
        return number(0) if key == "dns_startup_wait_seconds" else number(0, exclusive_minimum=True)
    return ConfigSchema({k: Setting(check(k, v), v) for k, v in _DEFAULTS.items()})


#: ``plugins.core-state``: every key, its default and its check
SCHEMA = _schema()


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Defaults plus checked values (:data:`SCHEMA`, and one rule a schema cannot say); raises
    :class:`PluginConfigError` naming the key."""
    if not isinstance(config, dict):
        raise PluginConfigError(f"plugins.{NAME} must be a mapping")
    out = check_or_raise(SCHEMA, NAME, config)
    if out["dns_refresh_seconds"] > out["dns_max_refresh_seconds"]:
        raise PluginConfigError(f"plugins.{NAME}.dns_refresh_seconds: must not exceed "
                                f"dns_max_refresh_seconds ({out['dns_max_refresh_seconds']})")
    return out


class CoreStatePlugin:
    """The hooks of one engine's core state (the host makes one instance per engine)."""

    def __init__(self) -> None:
        self.state: CoreState | None = None

    def state_for(self, engine: Any) -> CoreState:
        """The state (created with the defaults on first use, e.g. by ``falconet fields``)."""
        if self.state is None:
            self.state = CoreState(engine)
        return self.state

    @hookimpl
    def falconet_config_schema(self) -> ConfigSchema:
        return SCHEMA

    @hookimpl
    def falconet_configure(self, config: dict[str, Any], engine: Any) -> None:
        self.state = CoreState(engine, config)

    @hookimpl
    def falconet_fields(self, engine: Any) -> list[Any]:
        st = self.state_for(engine)
        return core_field_defs(st.tables, st.users, getattr(engine, "hostname", None), st.dns)

    @hookimpl
    def falconet_event_parsers(self, engine: Any) -> list[Any]:
        return [self.state_for(engine).parser]

    @hookimpl
    def falconet_start(self, engine: Any) -> None:
        st = self.state_for(engine)
        live = bool(engine.extras.get("falconet.live"))
        st.parser.live = live
        if live and st.users.containers is not None:
            st.users.containers.frozen = False
        if live and st.config["bootstrap"]:
            st.bootstrap_stats = s = bootstrap(st.tables, read_env=st.config["read_env"])
            engine.log.info("core-state: %d processes, %d threads, %d fds read from /proc in "
                            "%.0f ms", s.processes, s.threads, s.fds, s.seconds * 1000)
        if live:
            st.start_sweeper()
        st.dns.autostart = True          # names a hot reload adds start the thread too
        if st.dns.entries:
            st.dns.start()
        if not live and st.dns.entries and st.config["dns_startup_wait_seconds"] > 0:
            # a replay starts at once: let the first answers arrive (bounded) so its connections
            # are matched as a live engine that had been running would match them
            if not st.dns.wait_resolved(st.config["dns_startup_wait_seconds"]):
                engine.log.warning("core-state: the domain names of the rules are not resolved "
                                   "yet (fd.*ip.name checks match once they are)")

    @hookimpl
    def falconet_stop(self, engine: Any) -> None:
        if self.state is not None:
            self.state.stop()

    @hookimpl
    def falconet_capture_state(self, engine: Any) -> Any:
        return self.state_for(engine).capture()

    @hookimpl
    def falconet_restore_state(self, plugin: str, data: Any, engine: Any) -> None:
        if plugin == NAME:
            self.state_for(engine).restore(data)


#: the host makes one instance of this class per engine
FALCONET_PLUGIN = CoreStatePlugin
