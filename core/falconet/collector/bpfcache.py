"""A cache of the compiled BPF program, so a start on an unchanged kernel, rules and config does
not run clang (the ~2 s that made start-up slower than Falco's, see docs/collector.md).

bcc has no object cache. After ``bcc.BPF(text=...)`` the loader child (:mod:`bpfproc`, mode
``compile``) dumps what a load needs: each function's bytecode, the specs of the maps it uses
(type, key/value size, max_entries, flags, name, read back from the kernel) and the relocation
sites (``ld_imm64`` with ``src_reg == BPF_PSEUDO_MAP_FD``: the imm is the child's map fd, recorded
as a map index). That :class:`Entry` is written to the cache and then loaded by
:func:`load_entry` *in this process* with plain ``bpf(2)`` calls (:mod:`bpfsyscall`): no bcc, no
LLVM, no child. A hit and a miss load through the same code, so the first start proves the entry
loads before a second start reuses it.

The engine's own tgid (``SELF_TGID``, the program skips the engine's events) changes at every
start, so the program is compiled with a sentinel value and the sentinel's sites are patched at
load. Compilers can fold a constant into a neighbour (``x < N+1``): an entry whose bytecode holds
a value next to the sentinel, or none of it, is not cacheable and the old bcc load is used.

Key: sha256 of (entry format, program text, cflags, kernel release and version, the hash of
``/sys/kernel/btf/vmlinux``, the bcc version, the falconet version, this module's source, the
kernel headers and libbcc bcc compiles with: :func:`toolchain_id`). The
directory is ``$FALCONET_BPF_CACHE_DIR``, else ``/var/cache/falconet/bpf``: created 0700, files
0600 written atomically (temp file + rename), opened relative to the directory fd with
``O_NOFOLLOW``. A corrupt or mismatched entry is counted (:data:`STATS`), logged, removed and
compiled again; it never stops the engine.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import importlib.util
import json
import logging
import os
import platform
import re
import stat
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from falconet.collector import bpfsyscall as sc

log = logging.getLogger("falconet.collector")

FORMAT = 1
DEFAULT_DIR = "/var/cache/falconet/bpf"
MAX_ENTRIES = 16                 # entries kept (oldest removed): one per rules/config variant
MAX_FILE = 64 << 20              # an entry larger than this is corrupt (ours are ~1-3 MB)
#: the compile-time SELF_TGID; patched to the engine's tgid at load (> pid_max, < 2**31)
SENTINEL = 0x5EF7A61D
_NEAR = 4                        # |imm - sentinel| <= this (not equal) makes an entry uncacheable
_SELF_FLAG = re.compile(r"^-DSELF_TGID=(\d+)$")

#: what the cache did in this process: hit, miss, stored, corrupt, uncacheable, load_failed, ...
STATS: Counter[str] = Counter()

LD_IMM64 = 0x18
PSEUDO_MAP_FD = 1
CALL = 0x85


class CacheError(Exception):
    """An entry (or the cache directory) cannot be used; the message says why."""


class CacheDirError(CacheError):
    """The cache directory cannot be used (missing permissions, a symlink, another owner)."""


@dataclass
class Entry:
    """A compiled program: functions' bytecode (map imms = map index), the maps, the sites."""

    key: str
    license: str
    kern_version: int
    maps: list[sc.MapSpec]
    #: function name -> instructions (map references hold the map's index in ``maps``)
    progs: dict[str, bytes]
    #: function name -> [(insn index, map index)]
    relocs: dict[str, list[tuple[int, int]]]
    #: function name -> insn indexes whose imm is SELF_TGID
    self_sites: dict[str, list[int]] = field(default_factory=dict)

    def to_json(self) -> bytes:
        body = {"format": FORMAT, "key": self.key, "license": self.license,
                "kern_version": self.kern_version,
                "maps": [m.__dict__ for m in self.maps],
                "progs": {n: base64.b64encode(b).decode() for n, b in self.progs.items()},
                "relocs": self.relocs, "self_sites": self.self_sites}
        text = json.dumps(body, sort_keys=True)
        digest = hashlib.sha256(text.encode()).hexdigest()
        return json.dumps({"digest": digest, "body": body}, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes, key: str) -> Entry:
        """Parse and check an entry; raises :class:`CacheError` if anything is off."""
        try:
            outer = json.loads(data)
            body = outer["body"]
            if hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest() \
                    != outer["digest"]:
                raise CacheError("digest mismatch")
            if body["format"] != FORMAT or body["key"] != key:
                raise CacheError("format or key mismatch")
            maps = [sc.MapSpec(**m) for m in body["maps"]]
            progs = {str(n): base64.b64decode(b, validate=True)
                     for n, b in body["progs"].items()}
            relocs = {str(n): [(int(i), int(m)) for i, m in v]
                      for n, v in body["relocs"].items()}
            sites = {str(n): [int(i) for i in v] for n, v in body["self_sites"].items()}
            e = cls(key, str(body["license"]), int(body["kern_version"]), maps, progs, relocs,
                    sites)
        except CacheError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as ex:
            raise CacheError(f"malformed entry ({type(ex).__name__}: {ex})") from None
        for name, insns in e.progs.items():
            n = len(insns) // 8
            if len(insns) % 8 or not n:
                raise CacheError(f"bad bytecode size of {name}")
            if any(not (0 <= i < n and 0 <= m < len(e.maps)) for i, m in e.relocs.get(name, [])):
                raise CacheError(f"bad relocation of {name}")
            if any(not 0 <= i < n for i in e.self_sites.get(name, [])):
                raise CacheError(f"bad SELF_TGID site of {name}")
        return e


# --------------------------------------------------------------------------- the key
_btf_digest: str | None = None


def btf_digest(path: str = "/sys/kernel/btf/vmlinux") -> str:
    """sha256 of the kernel's BTF (read once per process: ~5 MB, ~10 ms)."""
    global _btf_digest
    if _btf_digest is None:
        with open(path, "rb") as f:
            _btf_digest = hashlib.sha256(f.read()).hexdigest()
    return _btf_digest


def bcc_version() -> str:
    """bcc's version without importing bcc (which would map LLVM into this process)."""
    from falconet.collector.bccloader import DIST_PACKAGES  # noqa: PLC0415
    spec = importlib.util.find_spec("bcc")
    dirs = [os.path.dirname(spec.origin)] if spec and spec.origin else []
    dirs += [os.path.join(d, "bcc") for d in DIST_PACKAGES]
    for d in dirs:
        try:
            text = Path(d, "version.py").read_text()
        except OSError:
            continue
        m = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", text)
        return m.group(1) if m else hashlib.sha256(text.encode()).hexdigest()
    return "unknown"


def toolchain_id(release: str | None = None) -> list[Any]:
    """What else bcc's output depends on: the kernel headers it compiles against (the
    ``build`` link's target and its generated config) and the libbcc (bundling LLVM) that
    compiles. Their paths, sizes and modification times: an upgrade of either is a new key."""
    release = release or os.uname().release
    build = f"/lib/modules/{release}/build"
    out: list[Any] = [os.path.realpath(build)]
    paths = [os.path.join(build, "include", "generated", n) for n in ("autoconf.h", "compile.h")]
    paths += sorted(glob.glob("/usr/lib/*/libbcc.so.0") + glob.glob("/usr/lib/libbcc.so.0")
                    + glob.glob("/usr/local/lib/libbcc.so.0"))
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            continue
        out.append([os.path.realpath(p), st.st_size, st.st_mtime_ns])
    return out


def _falconet_version() -> str:
    from falconet import __version__  # noqa: PLC0415
    return str(__version__)


def _own_source() -> str:
    """This module and the loader it feeds: a change to how entries are made or read is a new
    key (a development checkout keeps the same version string)."""
    h = hashlib.sha256()
    for mod in (__file__, sc.__file__):
        h.update(Path(mod).read_bytes())
    return h.hexdigest()


def compile_cflags(cflags: list[str]) -> tuple[list[str], int | None]:
    """``cflags`` with SELF_TGID set to :data:`SENTINEL`, and the tgid it had (None: absent)."""
    out, tgid = [], None
    for f in cflags:
        m = _SELF_FLAG.match(f)
        if m:
            tgid = int(m.group(1))
            f = f"-DSELF_TGID={SENTINEL}"
        out.append(f)
    return out, tgid


def cache_key(text: str, cflags: list[str], *, btf: str | None = None,
              release: str | None = None, kversion: str | None = None,
              bcc: str | None = None, falconet: str | None = None,
              toolchain: list[Any] | None = None) -> str:
    """The entry's key (hex sha256); ``cflags`` as compiled (with the sentinel). The keyword
    arguments default to this machine's values (tests pass their own)."""
    uname = os.uname()
    parts = [FORMAT, text, cflags, release or uname.release, kversion or uname.version,
             btf or btf_digest(), bcc or bcc_version(), falconet or _falconet_version(),
             _own_source(), platform.machine(),
             toolchain if toolchain is not None else toolchain_id(release)]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


# --------------------------------------------------------------------------- making an entry
def _insn(insns: bytes, i: int) -> tuple[int, int, int]:
    code, regs, _off, imm = struct.unpack_from("<BBhi", insns, 8 * i)
    return code, regs >> 4, imm


def _near(v: int) -> bool:
    return v != SENTINEL and (abs(v - SENTINEL) <= _NEAR or abs(v + SENTINEL) <= _NEAR)


def scan(name: str, insns: bytes, fd_index: dict[int, int]) -> tuple[bytes, list[tuple[int, int]],
                                                                     list[int]]:
    """Return ``insns`` with each map fd replaced by its map index, the relocation sites and the
    SELF_TGID sites. Raises :class:`CacheError` for what a load could not reproduce (map value
    pointers, BTF ids, kfuncs) or a constant folded next to the sentinel."""
    out = bytearray(insns)
    relocs: list[tuple[int, int]] = []
    sites: list[int] = []
    n = len(insns) // 8
    i = 0
    while i < n:
        code, src, imm = _insn(insns, i)
        if code == LD_IMM64:
            if i + 1 >= n:
                raise CacheError(f"{name}: truncated ld_imm64")
            hi = _insn(insns, i + 1)[2]
            if src == PSEUDO_MAP_FD:
                if imm not in fd_index:
                    raise CacheError(f"{name}: reference to an unknown map fd {imm}")
                relocs.append((i, fd_index[imm]))
                struct.pack_into("<i", out, 8 * i + 4, fd_index[imm])
            elif src:
                raise CacheError(f"{name}: ld_imm64 with src_reg {src} is not cacheable")
            else:
                val = (hi << 32) | (imm & 0xFFFFFFFF)
                if val == SENTINEL:
                    sites.append(i)
                elif hi == SENTINEL and imm == 0:
                    sites.append(i + 1)
                elif _near(imm) or _near(hi) or hi == SENTINEL or imm == SENTINEL:
                    raise CacheError(f"{name}: a constant next to SELF_TGID at insn {i}")
            i += 2
            continue
        if code == CALL and src == 2:
            raise CacheError(f"{name}: kfunc calls are not cacheable")
        if imm == SENTINEL:
            sites.append(i)
        elif _near(imm):
            raise CacheError(f"{name}: a constant next to SELF_TGID at insn {i}")
        i += 1
    return bytes(out), relocs, sites


def make_entry(key: str, functions: dict[str, bytes], map_fds: dict[str, int], license: str,
               kern_version: int) -> Entry:
    """An entry from a compiled module: ``functions`` (name -> bytecode as compiled, map imms
    are fds of this process) and ``map_fds`` (every map name -> its fd). Raises
    :class:`CacheError` if the program cannot be cached."""
    maps: list[sc.MapSpec] = []
    fd_index: dict[int, int] = {}
    for name, fd in map_fds.items():
        spec = sc.map_info(fd)
        if spec.type in sc.MAP_TYPES_NOT_COPYABLE:
            raise CacheError(f"map {name}: type {spec.type} is not cacheable")
        fd_index[fd] = len(maps)
        maps.append(sc.MapSpec(name, spec.type, spec.key_size, spec.value_size,
                               spec.max_entries, spec.flags, spec.map_extra))
    progs, relocs, sites = {}, {}, {}
    for fn, insns in functions.items():
        if len(insns) % 8 or not insns:
            raise CacheError(f"{fn}: bad bytecode size {len(insns)}")
        progs[fn], relocs[fn], sites[fn] = scan(fn, insns, fd_index)
    if not any(sites.values()):
        raise CacheError("SELF_TGID not found in the bytecode")
    return Entry(key, license, kern_version, maps, progs, relocs, sites)


# --------------------------------------------------------------------------- loading an entry
def _patched(entry: Entry, fn: str, map_fds: list[int], tgid: int) -> bytes:
    b = bytearray(entry.progs[fn])
    for i, m in entry.relocs.get(fn, []):
        b[8 * i + 1] = (b[8 * i + 1] & 0x0F) | (PSEUDO_MAP_FD << 4)
        struct.pack_into("<i", b, 8 * i + 4, map_fds[m])
    for i in entry.self_sites.get(fn, []):
        struct.pack_into("<i", b, 8 * i + 4, tgid)
    return bytes(b)


def _prog_type(kind: str) -> int:
    return sc.BPF_PROG_TYPE_TRACEPOINT if kind == "tp" else sc.BPF_PROG_TYPE_RAW_TRACEPOINT


def _auto_target(fn: str) -> tuple[str, str]:
    """bcc's auto-attached names: ``raw_tracepoint__X`` -> raw X; ``tracepoint__C__N`` -> C:N."""
    if fn.startswith("raw_tracepoint__"):
        return "raw", fn.removeprefix("raw_tracepoint__")
    if fn.startswith("tracepoint__"):
        cat, _, ev = fn.removeprefix("tracepoint__").partition("__")
        return "tp", f"{cat}:{ev}"
    raise CacheError(f"{fn}: unknown auto-attach prefix")


def load_entry(entry: Entry, request: dict[str, Any], tgid: int, tracefs: str) -> dict[str, int]:
    """Create the maps, load every function, fill the dispatch table, attach (tracepoints, then
    the sys_exit dispatcher last, as :mod:`bpfproc`'s child does), close what the kernel now
    holds itself. Returns ``{name: fd}`` as :func:`bpfproc.load_in_child` does. On error every
    fd made so far is closed and ``OSError``/``CacheError`` raised."""
    owned: list[int] = []          # closed on error
    keep: dict[str, int] = {}
    map_fds: list[int] = []
    prog_fds: list[int] = []
    try:
        for spec in entry.maps:
            fd = _map_create(spec)
            owned.append(fd)
            map_fds.append(fd)
        by_name = {m.name: fd for m, fd in zip(entry.maps, map_fds, strict=True)}
        # load everything first: no attachment sees a half-made program set
        loaded: dict[str, int] = {}
        targets: list[tuple[str, str, str]] = []
        for kind, tp, fn in request["attach"]:
            if kind == "auto":
                kind, tp = _auto_target(fn)
            targets.append((kind, tp, fn))
        for _nr, fn in request["dispatch"]:
            if fn not in loaded:
                loaded[fn] = _load_prog(entry, fn, sc.BPF_PROG_TYPE_RAW_TRACEPOINT, map_fds, tgid)
                prog_fds.append(loaded[fn])
        for kind, _tp, fn in targets:
            if fn not in loaded:
                loaded[fn] = _load_prog(entry, fn, _prog_type(kind), map_fds, tgid)
                prog_fds.append(loaded[fn])
        # tail-called programs of other prog arrays (the kernel path walk): raw tracepoint
        # programs too, in place before anything that calls them is attached
        for tname, idx, fn in request.get("tails", ()):
            if fn not in loaded:
                loaded[fn] = _load_prog(entry, fn, sc.BPF_PROG_TYPE_RAW_TRACEPOINT, map_fds,
                                        tgid)
                prog_fds.append(loaded[fn])
            tfd = by_name.get(tname)
            if tfd is None:
                raise CacheError(f"no {tname} map in the entry")
            sc.map_update_u32(tfd, idx, loaded[fn])
        if request["dispatch"]:
            table = by_name.get("exit_progs")
            if table is None:
                raise CacheError("no exit_progs map in the entry")
            for nr, fn in request["dispatch"]:
                sc.map_update_u32(table, nr, loaded[fn])
        # the sys_exit dispatcher last (see bpfproc): the other attachments first
        for kind, tp, fn in sorted(targets, key=lambda t: t[0] == "raw" and t[1] == "sys_exit"):
            if kind == "tp":
                fd = sc.tracepoint_attach(tracefs, tp, loaded[fn])
                keep[f"tp:{tp}"] = fd
            else:
                fd = sc.raw_tracepoint_open(tp, loaded[fn])
                keep[f"raw:{tp}"] = fd
            owned.append(fd)
        for m in request["maps"]:
            if m not in by_name:
                raise CacheError(f"the entry has no map {m}")
            keep[f"map:{m}"] = by_name[m]
    except BaseException:
        for fd in owned + prog_fds:
            _close(fd)
        raise
    # the attachments and the prog array hold the programs; maps not handed out are held by
    # the programs that use them
    for fd in prog_fds:
        _close(fd)
    kept = set(keep.values())
    for fd in map_fds:
        if fd not in kept:
            _close(fd)
    return keep


def _map_create(spec: sc.MapSpec) -> int:
    """Create a map; on EPERM raise RLIMIT_MEMLOCK once and retry (kernels before 5.11 charge
    maps to it, as bcc does in its process; later kernels use memory cgroups)."""
    import resource  # noqa: PLC0415
    try:
        return sc.map_create(spec)
    except PermissionError:
        try:
            resource.setrlimit(resource.RLIMIT_MEMLOCK,
                               (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        except (ValueError, OSError):
            pass
    return sc.map_create(spec)           # the same error again if the limit was not the cause


def _load_prog(entry: Entry, fn: str, prog_type: int, map_fds: list[int], tgid: int) -> int:
    if fn not in entry.progs:
        raise CacheError(f"the entry has no function {fn}")
    return sc.prog_load(fn, prog_type, _patched(entry, fn, map_fds, tgid), entry.license,
                        entry.kern_version)


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


# --------------------------------------------------------------------------- the directory
def cache_dir() -> str:
    return os.environ.get("FALCONET_BPF_CACHE_DIR") or DEFAULT_DIR


def _open_dir(path: str) -> int:
    """An fd of ``path`` (created 0700 with missing parents), checked to be a real directory
    owned by us and writable by nobody else. Raises :class:`CacheError`."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise CacheDirError(f"{path}: not a usable directory ({e.strerror}; symlinks are "
                            "refused)") from None
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        os.close(fd)
        raise CacheDirError(f"{path}: must be owned by uid {os.geteuid()} and not writable "
                            f"by group or others (mode {stat.S_IMODE(st.st_mode):04o})")
    return fd


def read(key: str, path: str | None = None) -> Entry | None:
    """The entry of ``key``, or None when there is none. A corrupt entry is removed and
    :class:`CacheError` raised."""
    dfd = _open_dir(path or cache_dir())
    name = f"{key}.json"
    try:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        except FileNotFoundError:
            return None
        except OSError as e:
            _unlink(dfd, name)
            raise CacheError(f"{name}: cannot open ({e.strerror}; symlinks are refused)") \
                from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() \
                    or st.st_mode & 0o077 or st.st_size > MAX_FILE:
                _unlink(dfd, name)
                raise CacheError(f"{name}: not a 0600 regular file of ours under "
                                 f"{MAX_FILE} bytes")
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read(MAX_FILE + 1)
        finally:
            os.close(fd)
        try:
            return Entry.from_json(data, key)
        except CacheError:
            _unlink(dfd, name)
            raise
    finally:
        os.close(dfd)


def write(entry: Entry, path: str | None = None) -> None:
    """Store atomically (0600 temp file, fsync, rename); keep the newest :data:`MAX_ENTRIES`."""
    dfd = _open_dir(path or cache_dir())
    tmp = f".{entry.key}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=dfd)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(entry.to_json())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, f"{entry.key}.json", src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            _unlink(dfd, tmp)
            raise
        _prune(dfd)
    except OSError as e:
        raise CacheError(f"cannot write the BPF cache entry: {e.strerror or e}") from None
    finally:
        os.close(dfd)


def mark_uncacheable(key: str, reason: str, path: str | None = None) -> None:
    """Remember that ``key`` cannot go through the cache (``<key>.nocache``, holding the reason),
    so later starts compile once with bcc instead of twice."""
    try:
        dfd = _open_dir(path or cache_dir())
    except CacheDirError:
        return
    tmp = f".{key}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=dfd)
        with os.fdopen(fd, "w") as f:
            f.write(reason[:4000] + "\n")
        os.replace(tmp, f"{key}.nocache", src_dir_fd=dfd, dst_dir_fd=dfd)
    except OSError:
        _unlink(dfd, tmp)
    finally:
        os.close(dfd)


def is_marked_uncacheable(key: str, path: str | None = None) -> bool:
    try:
        dfd = _open_dir(path or cache_dir())
    except CacheDirError:
        return False
    try:
        st = os.stat(f"{key}.nocache", dir_fd=dfd, follow_symlinks=False)
        return stat.S_ISREG(st.st_mode)
    except OSError:
        return False
    finally:
        os.close(dfd)


def remove(key: str, path: str | None = None) -> None:
    """Remove the entry of ``key`` if there is one (it did not load)."""
    try:
        dfd = _open_dir(path or cache_dir())
    except CacheDirError:
        return
    try:
        _unlink(dfd, f"{key}.json")
    finally:
        os.close(dfd)


def _prune(dfd: int) -> None:
    entries = []
    for name in os.listdir(dfd):
        if name.endswith((".json", ".nocache")):
            try:
                entries.append((os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mtime, name))
            except OSError:
                continue
    for _m, name in sorted(entries, reverse=True)[MAX_ENTRIES:]:
        _unlink(dfd, name)


def _unlink(dfd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dfd)
    except OSError:
        pass


# --------------------------------------------------------------------------- BTF offsets
def kernel_offsets() -> dict[str, int]:
    """``btf.kernel_offsets()`` (~0.3 s of pure-Python BTF parsing) cached by the BTF hash and
    btf.py's source; any cache problem computes them directly."""
    from falconet.collector import btf  # noqa: PLC0415
    try:
        with open(btf.VMLINUX, "rb") as f:
            data = f.read()
    except OSError as e:
        raise btf.BTFError(f"cannot read kernel BTF {btf.VMLINUX}: {e.strerror} "
                           "(needs CONFIG_DEBUG_INFO_BTF=y)") from e
    global _btf_digest
    _btf_digest = hashlib.sha256(data).hexdigest()
    key = hashlib.sha256(json.dumps(["offsets", FORMAT, _btf_digest,
                                     Path(btf.__file__).read_text()]).encode()).hexdigest()
    name = f"offsets-{key}"
    try:
        cached = _read_small(name)
        if cached is not None:
            return {str(k): int(v) for k, v in cached.items()}
    except CacheDirError as e:
        log.info("BPF cache: %s", e)
        return btf.kernel_offsets(btf.BTF(data))
    except (CacheError, ValueError, AttributeError, TypeError) as e:
        STATS["offsets_corrupt"] += 1
        log.warning("BPF cache: ignoring the cached BTF offsets: %s", e)
    offsets = btf.kernel_offsets(btf.BTF(data))
    try:
        _write_small(name, offsets)
    except CacheError as e:
        log.info("BPF cache: %s", e)
    return offsets


def _read_small(name: str) -> Any:
    dfd = _open_dir(cache_dir())
    try:
        try:
            fd = os.open(f"{name}.json", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise CacheError(f"{name}: {e.strerror}") from None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
                raise CacheError(f"{name}: not a 0600 regular file of ours")
            return json.loads(f.read(1 << 20))
    finally:
        os.close(dfd)


def _write_small(name: str, value: Any) -> None:
    dfd = _open_dir(cache_dir())
    tmp = f".{name}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=dfd)
        with os.fdopen(fd, "w") as f:
            json.dump(value, f)
        os.replace(tmp, f"{name}.json", src_dir_fd=dfd, dst_dir_fd=dfd)
    except OSError as e:
        _unlink(dfd, tmp)
        raise CacheError(f"cannot write {name}: {e.strerror or e}") from None
    finally:
        os.close(dfd)


def clear(path: str | None = None) -> int:
    """Remove every entry; returns how many files were removed."""
    dfd = _open_dir(path or cache_dir())
    n = 0
    try:
        for name in os.listdir(dfd):
            if name.endswith((".json", ".nocache", ".tmp")):
                _unlink(dfd, name)
                n += 1
    finally:
        os.close(dfd)
    return n
