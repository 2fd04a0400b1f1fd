"""Hot reload of the rules (SIGHUP, and changed rules files with ``watch_rules_files``): load
again with the same registry and configuration, validate, then swap between two events; on
errors the running rules stay. The watcher thread itself is :class:`falconet.reload.RulesReloader`."""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from falconet.app.errors import StartupError
from falconet.app.kernel_filter import update_kernel_filter
from falconet.app.load_rules import count_rules, default_rules_paths, load_rules_files, rules_files
from falconet.events import SYSCALL_SOURCE
from falconet.pipeline import refreeze_gc

if TYPE_CHECKING:
    from falconet.app.engine import App

log = logging.getLogger("falconet")


def watched_rules_paths(app: App) -> list[str]:
    """What a rules reload reads: the paths as given (a directory, to see files added to
    it) plus every file loaded from them, plugin rules files included."""
    given = list(app.cli_rules or app.config["rules_files"] or [])
    if not given:
        # the default rules: watch their directory too, so a file dropped into it loads
        given = list(dict.fromkeys(str(Path(f).parent) for f in default_rules_paths()))
    return list(dict.fromkeys([*given, *rules_files(app, app.cli_rules)]))


def reload_rules(app: App, reason: str = "reload requested", *, wait: float = 10.0) -> bool:
    """Load the rules again (same registry, plugin versions and configuration). On errors
    the running ruleset stays, every error is printed (``file:line:col``) and the failure is
    counted; on success the pipeline swaps rulesets between two events and the rule metrics
    follow. Returns whether the new rules are in place (or queued, when the loop is not
    running). Runs on the reloader thread while events keep flowing."""
    m = app.metrics
    try:
        res = load_rules_files(app, rules_files(app, app.cli_rules))
        errors = [] if res.ok else [str(e) for e in res.errors]
    except StartupError as e:
        res, errors = None, [str(e)]
    if errors:
        m.last_reload_ok = False
        m.reload_failures += 1
        print(f"falconet: error: rules reload ({reason}) failed, the previous rules stay "
              "active:\n" + "\n".join(f"  {e}" for e in errors), file=sys.stderr, flush=True)
        return False
    warn_untraced(app, res.ruleset)
    update_kernel_filter(app, res.ruleset)
    swapped = threading.Event()

    def on_swapped(_rs: Any) -> None:     # on the loop thread, between two events
        app.ruleset, app.load_result = res.ruleset, res
        count_rules(app, res)
        m.last_reload_ts = time.time()
        m.last_reload_ok = True
        swapped.set()

    if app.pipeline is None:
        on_swapped(res.ruleset)
    else:
        app.pipeline.swap_ruleset(res.ruleset, on_swapped)
        if not swapped.wait(wait):
            # the loop is between events for longer (an idle source): it swaps on its next
            # event or idle tick
            log.info("rules reload: the new ruleset is queued for the next event")
            return True
    n = sum(m.rules_loaded.values())
    print(f"falconet: rules reloaded ({reason}): {n} rules", file=sys.stderr, flush=True)
    return True


def warn_untraced(app: App, ruleset: Any) -> None:
    """The eBPF source picks its syscalls at start: say which new event types it does not
    trace (they need a restart)."""
    src = app.running_source
    built = getattr(src, "built", None)
    attached = getattr(built, "events", None)
    if src is None or attached is None:
        return
    from falconet import syscalls  # noqa: PLC0415 - only for the live collector

    wanted = ruleset.event_types(getattr(src, "source", SYSCALL_SOURCE))
    missing = sorted(syscalls.selected_events(wanted) - set(attached))
    if missing:
        print("falconet: warning: the reloaded rules use event types the running collector "
              f"does not trace (restart falconet to trace them): {', '.join(missing)}",
              file=sys.stderr, flush=True)


def reload_and_refreeze(app: App, reason: str) -> bool:
    """What the reloader thread calls: reload, then let the garbage collector see the old
    ruleset."""
    ok = reload_rules(app, reason)
    if ok:
        refreeze_gc()       # collect the old ruleset, which start-up froze
    return ok
