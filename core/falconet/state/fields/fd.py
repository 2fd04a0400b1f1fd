"""``fd.*``: the event's file descriptor from the fd table (files, sockets, pipes...), and the
``fd.*ip.name`` fields resolved by the engine's :class:`~falconet.state.dns.DomainResolver`.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import Any

from falconet.events import SYSCALL_SOURCE, Event
from falconet.fields.registry import ArgKind, Extractor, FieldDef
from falconet.state.dns import DomainResolver, domain_check
from falconet.state.fields.common import T
from falconet.state.fields.common import no_arg as _const
from falconet.state.fields.common import simple_field as _f
from falconet.state.parser import NAME_CHANGED_KEY
from falconet.state.tables import FdInfo, StateTables

FD_TYPES = {"f": "file", "d": "directory", "4": "ipv4", "6": "ipv6", "u": "unix", "p": "pipe",
            "e": "event", "s": "signalfd", "l": "eventpoll", "i": "inotify", "b": "bpf",
            "r": "io_uring", "m": "memfd", "n": "netlink", "t": "timerfd", "P": "pidfd",
            "o": "unknown"}


def fd_fields(tables: StateTables, dns: DomainResolver) -> list[FieldDef]:
    def fd(fn: Callable[[FdInfo], Any]) -> Extractor:
        def ex(evt: Event) -> Any:
            f = evt.fdinfo
            return None if f is None else fn(f)
        return ex

    def net(fn: Callable[[FdInfo], Any]) -> Extractor:
        """Only for IPv4/IPv6 sockets; ``None`` otherwise or when the value is not known."""
        def ex(evt: Event) -> Any:
            f = evt.fdinfo
            if f is None or f.typechar not in "46":
                return None
            v = fn(f)
            return v if v not in ("", None) else None
        return ex

    def local(f: FdInfo) -> tuple[str, int]:
        return (f.dip, f.dport) if f.is_server else (f.sip, f.sport)

    def remote(f: FdInfo) -> tuple[str, int]:
        return (f.sip, f.sport) if f.is_server else (f.dip, f.dport)

    def both(fn: Callable[[FdInfo], tuple[Any, Any]]) -> Callable[[str | None], Extractor]:
        """Existential over client and server (fd.ip, fd.net, fd.port): a tuple of the known values."""
        def make(_arg: str | None) -> Extractor:
            def ex(evt: Event) -> tuple[Any, ...] | None:
                f = evt.fdinfo
                if f is None or f.typechar not in "46":
                    return None
                vals = tuple(v for v in fn(f) if v not in ("", None, 0))
                return vals or None
            return ex
        return make

    def directory(f: FdInfo) -> str | None:
        if f.typechar == "d":
            return f.name
        if f.typechar == "f" and f.name:
            return posixpath.dirname(f.name) or "/"
        return None

    def filename(f: FdInfo) -> str | None:
        if f.typechar != "f" or not f.name:
            return None
        return posixpath.basename(f.name)

    def types_factory(arg: str | None) -> Extractor:
        if arg is None:
            def all_types(evt: Event) -> tuple[str, ...] | None:
                t = evt.thread
                if t is None:
                    return None
                seen: dict[str, None] = {}
                for f in t.fds.values():
                    seen[FD_TYPES.get(f.typechar, "unknown")] = None
                return tuple(seen)
            return all_types
        n = int(arg)

        def one(evt: Event) -> tuple[str, ...] | None:
            t = evt.thread
            f = t.fds.get(n) if t is not None else None
            return None if f is None else (FD_TYPES.get(f.typechar, "unknown"),)
        return one

    def sockfamily(f: FdInfo) -> str | None:
        tc = f.typechar
        return "ip" if tc in "46" else ("unix" if tc == "u" else None)

    ips = frozenset({SYSCALL_SOURCE})
    return [
        _f("fd.num", T.INT64, "the unique number identifying the file descriptor (-1 for a failed "
           "open).", fd(lambda f: f.num)),
        _f("fd.type", T.STRING, "type of FD. Can be 'file', 'directory', 'ipv4', 'ipv6', 'unix', "
           "'pipe', 'event', 'signalfd', 'eventpoll', 'inotify', 'memfd', 'netlink', 'bpf', "
           "'io_uring', 'timerfd' or 'unknown'.", fd(lambda f: FD_TYPES.get(f.typechar, "unknown"))),
        _f("fd.typechar", T.STRING, "type of FD as a single character. Can be 'f' for file, 4 for "
           "IPv4 socket, 6 for IPv6 socket, 'u' for unix socket, p for pipe, 'e' for eventfd, 's' "
           "for signalfd, 'l' for eventpoll, 'i' for inotify, 'b' for bpf, 'r' for io_uring, 'm' "
           "for memfd, 'n' for netlink, 'd' for directory, 'o' for unknown.", fd(lambda f: f.typechar)),
        _f("fd.name", T.PATH, "FD full name. If the fd is a file, this field contains the full "
           "path. If the FD is a socket, this field contain the connection tuple "
           "(client_ip:port->server_ip:port).", fd(lambda f: f.name)),
        _f("fd.nameraw", T.PATH, "FD full name raw. Just like fd.name, but only used if fd is a "
           "file path: the path as the syscall gave it, not made absolute.",
           fd(lambda f: f.nameraw or (f.name if f.typechar in "fd" else ""))),
        _f("fd.directory", T.PATH, "If the fd is a file, the directory that contains it.",
           fd(directory), cache=True),
        _f("fd.filename", T.STRING, "If the fd is a file, the filename without the path.",
           fd(filename), cache=True),
        _f("fd.ino", T.UINT64, "inode number of the referenced file.", fd(lambda f: f.ino or None)),
        _f("fd.dev", T.UINT32, "device number (containing the referenced file).",
           fd(lambda f: f.dev or None)),
        _f("fd.sockfamily", T.STRING, "the socket family for socket events. Can be 'ip' or 'unix'.",
           fd(sockfamily)),
        # libsinsp: "<NA>" (a value, not a missing field) for every fd that is not an IP socket
        # or whose protocol is unknown, as Falco 0.44.1 prints it (tests/fields/test_vs_falco.py)
        _f("fd.l4proto", T.STRING, "the IP protocol of a socket. Can be 'tcp', 'udp', 'icmp' or "
           "'raw'.", fd(lambda f: (f.l4proto or "<NA>") if f.typechar in "46" else "<NA>")),
        # libsinsp answers these for any fd (a file is not a server, not connected)
        _f("fd.is_server", T.BOOL, "'true' if the process owning this FD is the server endpoint in "
           "the connection.", fd(lambda f: bool(f.is_server) if f.typechar in "46u" else False)),
        _f("fd.connected", T.BOOL, "for TCP/UDP FDs, 'true' if the socket is connected.",
           fd(lambda f: bool(f.connected) if f.typechar in "46u" else False)),
        _f("fd.name_changed", T.BOOL, "True when an event changes the name of an fd used by this "
           "event. This can occur in some cases such as udp connections where the connection "
           "tuple changes.", lambda e: bool(e.cache.get(NAME_CHANGED_KEY, False))),
        _f("fd.cip", T.IPADDR, "client IP address.", net(lambda f: f.sip)),
        _f("fd.sip", T.IPADDR, "server IP address.", net(lambda f: f.dip)),
        _f("fd.lip", T.IPADDR, "local IP address.", net(lambda f: local(f)[0])),
        _f("fd.rip", T.IPADDR, "remote IP address.", net(lambda f: remote(f)[0])),
        _f("fd.cport", T.PORT, "for TCP/UDP FDs, the client port.", net(lambda f: f.sport or None)),
        _f("fd.sport", T.PORT, "for TCP/UDP FDs, server port.", net(lambda f: f.dport or None)),
        _f("fd.lport", T.PORT, "for TCP/UDP FDs, the local port.", net(lambda f: local(f)[1] or None)),
        _f("fd.rport", T.PORT, "for TCP/UDP FDs, the remote port.",
           net(lambda f: remote(f)[1] or None)),
        _f("fd.cnet", T.IPNET, "matches the client IP network of the fd.", net(lambda f: f.sip)),
        _f("fd.snet", T.IPNET, "matches the server IP network of the fd.", net(lambda f: f.dip)),
        _f("fd.lnet", T.IPNET, "matches the local IP network of the fd.", net(lambda f: local(f)[0])),
        _f("fd.rnet", T.IPNET, "matches the remote IP network of the fd.",
           net(lambda f: remote(f)[0])),
        FieldDef("fd.ip", T.IPADDR, "matches the ip address (client or server) of the fd: true if "
                 "either matches.", both(lambda f: (f.sip, f.dip)), ancestor=True, sources=ips),
        FieldDef("fd.net", T.IPNET, "matches the IP network (client or server) of the fd: true if "
                 "either matches.", both(lambda f: (f.sip, f.dip)), ancestor=True, sources=ips),
        FieldDef("fd.port", T.PORT, "matches the port (client or server) of the fd: true if either "
                 "matches.", both(lambda f: (f.sport, f.dport)), ancestor=True, sources=ips),
        *_domain_fields(dns, local, remote),
        FieldDef("fd.types", T.STRING, "List of FD types in use by the process. fd.types[N] gives "
                 "the type of fd N (e.g. fd.types[0] for stdin).", types_factory,
                 arg=ArgKind.OPTIONAL, arg_is_index=True, is_list=True, cache=True),
    ]


_DOMAIN_NOTE = (" No reverse DNS (as Falco): the engine resolves, in the background, the names "
                "conditions compare it with; '=', '!=' and 'in' test the address against their "
                "addresses. Extracted: the tracked name resolving to the address, if any.")


def _domain_fields(dns: DomainResolver, local: Callable[[FdInfo], tuple[str, int]],
                   remote: Callable[[FdInfo], tuple[str, int]]) -> list[FieldDef]:
    """``fd.cip.name``, ``fd.sip.name``, ``fd.lip.name``, ``fd.rip.name`` (see
    :mod:`falconet.state.dns`)."""
    def address(side: Callable[[FdInfo], str]) -> Extractor:
        def ex(evt: Event) -> str | None:
            f = evt.fdinfo
            if f is None or f.typechar not in "46":
                return None
            return side(f) or None
        return ex

    def field(name: str, what: str, side: Callable[[FdInfo], str]) -> FieldDef:
        addr = address(side)
        name_of = dns.name_of

        def extract(evt: Event) -> str | None:
            return name_of(addr(evt))

        def check(_arg: str | None, op: str, values: list[str]) -> Callable[[Event], bool] | None:
            return domain_check(dns, addr, op, values)
        return FieldDef(name, T.STRING, f"Domain name associated with the {what} IP address."
                        + _DOMAIN_NOTE, _const(extract), cache=False, compile_check=check)

    return [field("fd.cip.name", "client", lambda f: f.sip),
            field("fd.sip.name", "server", lambda f: f.dip),
            field("fd.lip.name", "local", lambda f: local(f)[0]),
            field("fd.rip.name", "remote", lambda f: remote(f)[0])]
