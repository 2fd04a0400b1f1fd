"""Hot reload of the rules (``falconet run``): on SIGHUP, and when a watched rules file changes.

Like Falco, a reload is a dry run first: the new ruleset is loaded and validated on the
:class:`RulesReloader` thread while events keep flowing through the old one; only a ruleset
without errors is handed to the pipeline, which swaps it in between two events
(:meth:`falconet.pipeline.Pipeline.swap_ruleset`). A failed reload keeps the old rules running.

Watching sleeps on inotify (:mod:`falconet.dirwatch`) over the watched files' directories and
compares file metadata when one changes; nothing is done per event, and an idle engine's
reloader does not wake. Where inotify cannot watch every directory (none, a missing directory)
it polls the metadata once per ``interval``; with inotify it still looks once per
:data:`BACKSTOP_SECONDS`, for filesystems that do not report changes (NFS written elsewhere).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable

from falconet.dirwatch import DirWatch, directories_of
from falconet.rules import rules_files_in

log = logging.getLogger("falconet.reload")

#: with inotify watching, the metadata is still compared this often (a filesystem that does
#: not report changes made elsewhere, such as NFS, is then followed within this)
BACKSTOP_SECONDS = 60.0

#: (path, mtime_ns, size, inode) of every watched file; a directory contributes its rules files
Fingerprint = tuple[tuple[str, int, int, int], ...]


def fingerprint(paths: Iterable[str]) -> Fingerprint:
    """What identifies the current content of ``paths``: files by mtime, size and inode (editors
    that save by rename change the inode); directories by their ``*.yaml``/``*.yml`` files, so an
    added or removed file counts as a change. A missing path is recorded as such."""
    out: list[tuple[str, int, int, int]] = []
    for p in paths:
        if os.path.isdir(p):
            try:
                files = rules_files_in([p])
            except OSError:
                files = []
            out.append((str(p), -2, len(files), 0))
        else:
            files = [str(p)]
        for f in files:
            try:
                st = os.stat(f)
                out.append((f, st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                out.append((f, -1, -1, -1))
    return tuple(out)


class RulesReloader:
    """A daemon thread that reloads the rules when asked (:meth:`request`, e.g. from a SIGHUP
    handler) or, when ``watch`` is not ``None``, when the fingerprint of those paths changes.

    Args:
        reload: does one reload and returns whether it succeeded (it logs and counts failures
            itself); runs on this thread.
        watch: a callable returning the paths to watch (re-evaluated after every reload, so a
            changed rules directory is followed), or ``None`` to reload on request only.
        interval: seconds between two polls of the watched paths, where inotify cannot watch
            them.
        settle: a change must stay unchanged this long before reloading, so a file caught
            half-written by an editor does not count as a failed reload.
    """

    def __init__(self, reload: Callable[[str], bool],
                 watch: Callable[[], list[str]] | None = None, *, interval: float = 1.0,
                 settle: float = 0.2) -> None:
        self._reload = reload
        self._watch = watch
        self.interval = interval
        self.settle = settle
        self._wake = threading.Event()
        self._stop = False
        self._reasons: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="falconet-rules-reload",
                                        daemon=True)
        self._seen: Fingerprint = ()
        self._dirs: DirWatch | None = None
        self._dirs_complete = False   # inotify watches every directory the paths depend on
        self.reloads = 0              # attempts made (tests poll this)

    def start(self) -> None:
        if self._watch is not None:
            try:
                self._dirs = DirWatch()
            except OSError as e:
                log.info("rules watch: no inotify (%s): polling every %.1f s", e, self.interval)
            self._seen = self._look()
        self._thread.start()

    def _look(self) -> Fingerprint:
        """The watched paths' fingerprint, with inotify following their directories."""
        assert self._watch is not None
        paths = self._watch()
        if self._dirs is not None:
            self._dirs_complete = self._dirs.watch(directories_of(paths))
        return fingerprint(paths)

    def _sleep(self, timeout: float | None) -> None:
        """Until a request, a stop, a change in a watched directory, or ``timeout``."""
        if self._dirs is not None:
            self._dirs.wait(timeout)
        else:
            self._wake.wait(timeout)
            self._wake.clear()

    def _poke(self) -> None:
        self._wake.set()
        if self._dirs is not None:
            self._dirs.wake()

    def request(self, reason: str) -> None:
        """Ask for a reload; safe from a signal handler (only sets an event)."""
        with self._lock:
            self._reasons.append(reason)
        self._poke()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop = True
        self._poke()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._dirs is not None and not self._thread.is_alive():
            self._dirs.close()
            self._dirs = None

    def _timeout(self) -> float | None:
        if self._watch is None:
            return None                                 # requests only
        return BACKSTOP_SECONDS if self._dirs_complete else self.interval

    def _run(self) -> None:
        while not self._stop:
            if not self._reasons:
                # a request that came while we were busy (settling, reloading) has already
                # spent its wakeup: the list says it is there
                self._sleep(self._timeout())
            if self._stop:
                break
            with self._lock:
                reasons, self._reasons = self._reasons, []
            if not reasons and self._watch is not None:
                changed = self._changed()
                if changed:
                    reasons.append(f"{changed} changed")
            if not reasons:
                continue
            try:
                self._reload(", ".join(dict.fromkeys(reasons)))
            except Exception as e:  # noqa: BLE001 - the reloader must survive any failure
                log.error("rules reload failed: %s: %s", type(e).__name__, e)
            self.reloads += 1
            if self._watch is not None:
                # what was just loaded is the new reference (a SIGHUP reload included)
                self._seen = self._look()

    def _settle(self) -> None:
        """Sleep ``settle`` seconds (a stop ends it; a change does not: it must stay put)."""
        deadline = time.monotonic() + self.settle
        while not self._stop:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._sleep(left)

    def _changed(self) -> str | None:
        """The first watched path that changed (after it settled), or ``None``."""
        assert self._watch is not None
        now = fingerprint(self._watch())
        if now == self._seen:
            return None
        while not self._stop:
            self._settle()
            later = fingerprint(self._watch())
            if later == now:
                break
            now = later
        old = dict((e[0], e) for e in self._seen)
        for e in now:
            if old.get(e[0]) != e:
                return e[0]
        return next(iter(set(old) - {e[0] for e in now}), "a rules file")
