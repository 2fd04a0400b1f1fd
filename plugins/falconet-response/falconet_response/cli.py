"""``falconet respond list|undo ID|rearm``: read the audit log, revert a reversible action, re-arm
policies whose circuit breaker opened (contributed through the ``falconet_commands`` hook)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Any

NAME = "respond"
HELP = "response actions: list the audit log, undo an action by id, re-arm policies"
DESCRIPTION = """Work with the response plugin's audit log (plugins.response.audit_log).

  list         every action, newest last: id, time, policy, action, result, target, undo state
  undo ID      revert a reversible action (freeze, pause, stop, isolate_network, label,
               quarantine...); the undo is audited too
  rearm        re-arm every policy whose circuit breaker opened (SIGHUP to the running engine)

examples:
  falconet respond list
  falconet respond list --json
  falconet respond undo 3f2a9c01be47
  falconet respond rearm
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from falconet.app import add_config_arguments  # noqa: PLC0415

    p.add_argument("verb", choices=["list", "undo", "rearm"], help="what to do")
    p.add_argument("id", nargs="?", help="the action id (undo)")
    add_config_arguments(p)
    p.add_argument("--json", action="store_true", help="list: print JSON lines")
    p.add_argument("--audit-log", metavar="FILE", help="the audit log (default: "
                   "plugins.response.audit_log)")


def _settings(args: argparse.Namespace) -> Any:
    from falconet.app import config_from_args  # noqa: PLC0415

    from falconet_response.settings import parse_settings  # noqa: PLC0415

    cfg = config_from_args(args)
    s = parse_settings(cfg.plugin_section("response"))
    if args.audit_log:
        s.audit_log = args.audit_log
    return cfg, s


def _when(ns: Any) -> str:
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(ns) / 1e9))
    except (TypeError, ValueError, OverflowError):
        return "-"


def _list(path: str, as_json: bool) -> int:
    from falconet_response.audit import actions_with_state  # noqa: PLC0415

    acts = actions_with_state(path)
    if as_json:
        for a in acts:
            print(json.dumps(a, default=str))
        return 0
    if not acts:
        print(f"no actions in {path}")
        return 0
    print(f"{'ID':<13} {'TIME (UTC)':<20} {'POLICY':<22} {'ACTION':<16} {'RESULT':<10} "
          f"{'TARGET':<28} UNDO")
    for a in acts:
        t = a.get("target") or {}
        target = str(t.get("key") or "-")[:28]
        undo = ("undone" if a.get("undone") else "undo " + a["id"]) if a.get("reversible") \
            else "-"
        print(f"{a.get('id', '-'):<13} {_when(a.get('ts')):<20} "
              f"{str(a.get('policy'))[:22]:<22} {str(a.get('action'))[:16]:<16} "
              f"{str(a.get('result'))[:10]:<10} {target:<28} {undo}")
    return 0


def undo_by_id(path: str, rid: str, actions: dict[str, Any], by: str) -> tuple[int, str]:
    """Revert action ``rid``: (exit code, message). The undo is appended to the audit log."""
    from falconet_response.audit import AuditLog, actions_with_state  # noqa: PLC0415

    rec = next((a for a in actions_with_state(path) if a.get("id") == rid), None)
    if rec is None:
        return 1, f"no action with id {rid} in {path}"
    if rec.get("undone"):
        return 1, f"action {rid} was already undone ({rec['undone'].get('by')})"
    if not rec.get("reversible") or not isinstance(rec.get("undo"), dict):
        return 1, f"action {rid} ({rec.get('action')}, {rec.get('result')}) is not reversible"
    act = actions.get(str(rec.get("action")))
    if act is None:
        return 1, f"action '{rec.get('action')}' is not available (is its plugin installed?)"
    try:
        out = act.undo(rec["undo"])
    except Exception as e:  # noqa: BLE001 - reported, audited
        from falconet_response.actions.base import Outcome  # noqa: PLC0415
        out = Outcome("failed", f"{type(e).__name__}: {e}"[:300])
    audit = AuditLog(path)
    audit.write({"type": "undo", "of": rid, "action": rec.get("action"), "by": by,
                 "result": out.result, "detail": out.detail})
    audit.close()
    return (0 if out.result == "done" else 1), f"undo {rid} ({rec.get('action')}): " \
                                               f"{out.result}: {out.detail}"


def _undo(cfg: Any, path: str, rid: str | None) -> int:
    from falconet.app import App  # noqa: PLC0415

    if not rid:
        print("falconet: error: respond undo needs the action id (see `falconet respond list`)",
              file=sys.stderr)
        return 2
    app = App(cfg)
    app.load_plugins()
    actions = {k: a for k, (_p, a) in app.actions.items()}
    rc, msg = undo_by_id(path, rid, actions, "cli")
    print(msg if rc == 0 else f"falconet: error: {msg}", file=sys.stdout if rc == 0 else sys.stderr)
    return rc


def _rearm(s: Any) -> int:
    try:
        with open(s.pidfile, encoding="ascii") as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        print(f"falconet: error: no running engine ({s.pidfile} not found); a restart re-arms "
              "every policy", file=sys.stderr)
        return 1
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        print(f"falconet: error: the engine (pid {pid}) is not running", file=sys.stderr)
        return 1
    print(f"sent SIGHUP to the engine (pid {pid}): disarmed policies are re-armed")
    return 0


def main(args: argparse.Namespace) -> int:
    from falconet.api import PluginConfigError  # noqa: PLC0415
    from falconet.app import guarded  # noqa: PLC0415

    from falconet_response.audit import AuditError  # noqa: PLC0415

    def body() -> int:
        try:
            cfg, s = _settings(args)
        except PluginConfigError as e:
            for line in str(e).splitlines():
                print(f"falconet: {line}", file=sys.stderr)
            return 2
        try:
            if args.verb == "list":
                return _list(s.audit_log, args.json)
            if args.verb == "undo":
                return _undo(cfg, s.audit_log, args.id)
            return _rearm(s)
        except AuditError as e:
            print(f"falconet: error: {e}", file=sys.stderr)
            return 1
    return guarded(body)
