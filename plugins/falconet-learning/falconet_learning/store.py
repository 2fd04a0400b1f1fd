"""The profile database: SQLite (WAL) under the state directory.

The directory is created 0700 and the database file 0600, neither through a symlink (the engine
runs as root and the path may sit in a directory others can write). Only the writer thread and
the CLI open it; the hot path never does.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from falconet_learning.profile import KINDS, LEARNING, READY, Profile

DB_NAME = "profiles.db"
#: bounds of an import (time and memory stay bounded whatever the file holds)
MAX_IMPORT_LINE = 65536
MAX_IMPORT_ENTRIES = 10_000_000
SCHEMA = """
CREATE TABLE IF NOT EXISTS profiles (
    id TEXT PRIMARY KEY, identity TEXT NOT NULL UNIQUE, state TEXT NOT NULL,
    created_ns INTEGER NOT NULL, ready_ns INTEGER NOT NULL DEFAULT 0,
    events INTEGER NOT NULL DEFAULT 0, full INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS entries (
    profile TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL,
    first_ns INTEGER NOT NULL, PRIMARY KEY (profile, kind, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alerts (
    profile TEXT NOT NULL, rule TEXT NOT NULL, priority TEXT NOT NULL, evidence TEXT NOT NULL,
    count INTEGER NOT NULL, PRIMARY KEY (profile, rule, evidence)) WITHOUT ROWID;
"""


class StoreError(RuntimeError):
    """The state directory or database cannot be used safely (the message says why)."""


def ensure_private_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (0700) if missing; refuse a symlink or a directory others can write."""
    p = Path(path)
    try:
        p.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(p)
    except OSError as e:
        raise StoreError(f"state directory {p}: {e.strerror or e}") from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise StoreError(f"state directory {p} is not a directory (a symlink is refused)")
    if st.st_uid != os.geteuid():
        raise StoreError(f"state directory {p} belongs to uid {st.st_uid}, not to us")
    if st.st_mode & 0o077:
        os.chmod(p, 0o700)
    return p


def _create_private_file(path: Path) -> None:
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as e:
        raise StoreError(f"{path}: {e.strerror or e} (a symlink is refused)") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise StoreError(f"{path} is not a regular file")
        if st.st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


# SQLite's text is strict UTF-8, but paths, names and argv may hold bytes that are not UTF-8
# (kept as surrogate escapes, as /proc and captures hold them). Such a value is stored as a BLOB
# of its exact bytes; a given value always gets the same storage class, so UNIQUE keys still
# deduplicate, and reading turns the BLOB back into the same string.
def to_db(value: str) -> str | bytes:
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape")


def from_db(value: Any) -> Any:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def _json_line(obj: dict[str, Any]) -> str:
    """One export line: valid UTF-8, a non-UTF-8 byte written as the JSON escape ``\\udcXX``
    (``backslashreplace`` of a lone surrogate is exactly that escape), read back exactly."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False).encode(
        "utf-8", "backslashreplace").decode("utf-8")


class ProfileStore:
    """One connection to the profile database (one thread uses it at a time)."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        d = ensure_private_dir(state_dir)
        self.path = d / DB_NAME
        for suffix in ("", "-wal", "-shm"):
            f = Path(str(self.path) + suffix)
            if suffix == "" or f.exists() or f.is_symlink():
                _create_private_file(f)
        try:
            self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: {e}") from None

    def close(self) -> None:
        self.db.close()

    # ----------------------------------------------------------------------------- reading
    def load(self) -> list[Profile]:
        """Every profile with its entries (the engine's in-memory copy at start)."""
        out: dict[str, Profile] = {}
        for pid, ident, state, created, ready, events, full in self.db.execute(
                "SELECT id, identity, state, created_ns, ready_ns, events, full FROM profiles"):
            # the module's constants (the hot path compares states by identity)
            st = READY if state == READY else LEARNING
            out[pid] = Profile(pid, from_db(ident), st, created, ready, events, full=bool(full))
        for pid, kind, key in self.db.execute("SELECT profile, kind, key FROM entries"):
            p = out.get(pid)
            if p is not None and kind in KINDS:
                p.add(kind, from_db(key))
        return list(out.values())

    def profiles(self) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT p.id, p.identity, p.state, p.created_ns, p.ready_ns, p.events, p.full, "
            "(SELECT count(*) FROM entries e WHERE e.profile = p.id) FROM profiles p "
            "ORDER BY p.identity").fetchall()
        return [{"id": r[0], "identity": from_db(r[1]), "state": r[2], "created_ns": r[3],
                 "ready_ns": r[4], "events": r[5], "full": bool(r[6]), "entries": r[7]}
                for r in rows]

    def find(self, ref: str) -> dict[str, Any] | None:
        """A profile by id, id prefix (unique) or identity."""
        rows = [p for p in self.profiles() if p["id"] == ref or p["identity"] == ref]
        if not rows and len(ref) >= 4:
            rows = [p for p in self.profiles() if p["id"].startswith(ref)]
        return rows[0] if len(rows) == 1 else None

    def entries(self, profile: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {k: [] for k in KINDS}
        for kind, key in self.db.execute(
                "SELECT kind, key FROM entries WHERE profile = ? ORDER BY kind, key", (profile,)):
            out.setdefault(kind, []).append(from_db(key))
        return out

    def alerts(self, profile: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT profile, rule, priority, evidence, count FROM alerts"
        rows = self.db.execute(q + (" WHERE profile = ?" if profile else "") +
                               " ORDER BY profile, rule, evidence",
                               (profile,) if profile else ()).fetchall()
        return [{"profile": r[0], "rule": r[1], "priority": r[2],
                 "evidence": json.loads(r[3]), "count": r[4]} for r in rows]

    # ----------------------------------------------------------------------------- writing
    def write_batch(self, profiles: Iterable[dict[str, Any]],
                    entries: Iterable[tuple[str, str, str, int]],
                    alerts: Iterable[tuple[str, str, str, str, int]] = ()) -> None:
        """One transaction: profile rows (upserted), new entries, alert evidence counts."""
        db = self.db
        db.execute("BEGIN")
        try:
            db.executemany(
                "INSERT INTO profiles (id, identity, state, created_ns, ready_ns, events, full) "
                "VALUES (:id, :identity, :state, :created_ns, :ready_ns, :events, :full) "
                "ON CONFLICT(id) DO UPDATE SET state=excluded.state, ready_ns=excluded.ready_ns, "
                "events=excluded.events, full=excluded.full",
                [{**p, "identity": to_db(p["identity"])} for p in profiles])
            db.executemany("INSERT OR IGNORE INTO entries (profile, kind, key, first_ns) "
                           "VALUES (?, ?, ?, ?)",
                           [(pr, kind, to_db(key), ts) for pr, kind, key, ts in entries])
            db.executemany(
                "INSERT INTO alerts (profile, rule, priority, evidence, count) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(profile, rule, evidence) DO UPDATE SET "
                "count = count + excluded.count", list(alerts))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def reset(self, profile: str) -> None:
        """Forget a profile: it learns again from its next event."""
        db = self.db
        db.execute("BEGIN")
        for table, col in (("entries", "profile"), ("alerts", "profile"), ("profiles", "id")):
            db.execute(f"DELETE FROM {table} WHERE {col} = ?", (profile,))  # noqa: S608 - fixed names
        db.execute("COMMIT")

    # ----------------------------------------------------------------------------- export
    def export_lines(self, ids: Iterable[str] | None = None) -> Iterator[str]:
        """The diff-able text form (``docs/learning.md``): one JSON object per line, sorted, keys
        sorted; a header line, then per profile its row and one line per entry."""
        yield _json_line({"falconet_profiles": 1})
        wanted = set(ids) if ids is not None else None
        for p in self.profiles():
            if wanted is not None and p["id"] not in wanted:
                continue
            yield _json_line({"profile": p["id"], "identity": p["identity"], "state": p["state"],
                              "created_ns": p["created_ns"], "ready_ns": p["ready_ns"],
                              "full": p["full"]})
            for kind, keys in sorted(self.entries(p["id"]).items()):
                for key in keys:
                    yield _json_line({"entry": p["id"], "kind": kind, "key": key})

    def import_lines(self, lines: Iterable[str], source: str = "<input>") -> int:
        """Load an export (profiles replace those with the same identity). Every problem is
        reported as ``source:line: ...`` and nothing is written. Returns the profiles imported."""
        profiles: dict[str, dict[str, Any]] = {}
        entries: list[tuple[str, str, str, int]] = []
        errors: list[str] = []
        header = False
        for n, line in enumerate(lines, start=1):
            if len(errors) >= 20:
                break
            if len(line) > MAX_IMPORT_LINE:
                errors.append(f"{source}:{n}: line longer than {MAX_IMPORT_LINE} characters")
                continue
            line = line.strip()
            if not line:
                continue
            if len(entries) >= MAX_IMPORT_ENTRIES:
                errors.append(f"{source}:{n}: more than {MAX_IMPORT_ENTRIES} entries")
                break
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                errors.append(f"{source}:{n}: not JSON ({e.msg})")
                continue
            except (ValueError, RecursionError) as e:   # a number too long for int(), too deep
                errors.append(f"{source}:{n}: not JSON ({e})")
                continue
            if not isinstance(d, dict):
                errors.append(f"{source}:{n}: expected a JSON object")
            elif not header:
                if d.get("falconet_profiles") != 1:
                    errors.append(f"{source}:{n}: expected the header "
                                  '{"falconet_profiles": 1} (is this a profile export?)')
                    break
                header = True
            elif "profile" in d:
                ok = (isinstance(d.get("profile"), str) and isinstance(d.get("identity"), str)
                      and d.get("state") in ("learning", "ready")
                      and isinstance(d.get("created_ns", 0), int)
                      and isinstance(d.get("ready_ns", 0), int))
                if not ok:
                    errors.append(f"{source}:{n}: a profile line needs profile, identity, "
                                  "state (learning|ready), created_ns, ready_ns")
                    continue
                profiles[d["profile"]] = {"id": d["profile"], "identity": d["identity"],
                                          "state": d["state"], "created_ns": d.get("created_ns", 0),
                                          "ready_ns": d.get("ready_ns", 0), "events": 0,
                                          "full": 1 if d.get("full") else 0}
            elif "entry" in d:
                if d["entry"] not in profiles or d.get("kind") not in KINDS \
                        or not isinstance(d.get("key"), str):
                    errors.append(f"{source}:{n}: an entry line needs a profile defined above, "
                                  f"kind ({'|'.join(KINDS)}) and key")
                    continue
                entries.append((d["entry"], d["kind"], d["key"], 0))
            else:
                errors.append(f"{source}:{n}: expected a profile or entry line")
        if not header and not errors:
            errors.append(f"{source}: empty (expected a profile export)")
        if errors:
            raise StoreError("\n".join(errors))
        for p in profiles.values():
            old = self.db.execute("SELECT id FROM profiles WHERE identity = ?",
                                  (to_db(p["identity"]),)).fetchone()
            for pid in {p["id"], old[0] if old else p["id"]}:
                self.reset(pid)
        self.write_batch(profiles.values(), entries)
        return len(profiles)


def new_profile_row(p: Profile) -> dict[str, Any]:
    return {"id": p.id, "identity": p.identity, "state": p.state, "created_ns": p.created_ns,
            "ready_ns": p.ready_ns, "events": p.events, "full": 1 if p.full else 0}


__all__ = ["DB_NAME", "LEARNING", "ProfileStore", "StoreError", "ensure_private_dir",
           "new_profile_row"]
