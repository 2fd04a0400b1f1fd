"""The simulator's catalogue: each action performs one real attack behaviour, safely.

An action runs in a :class:`~falconet.simulate.contexts.Context` (host, runc or docker). Rules
for every action: argv lists only (constant ``sh -c`` scripts of this file at most, never
untrusted input in them), nothing leaves loopback, every file is created below a private
temporary directory (:meth:`Context.private_dir`: ``mktemp -d``, 0700, a random name) and
removed, and the action is idempotent. No fixed path in a world-writable directory (/tmp,
/dev/shm): the simulator runs as root, and a symlink planted there beforehand would redirect its
writes or its ``chmod u+s``. The few fixed names the rules need (``/etc/falconet-sim.conf``,
credential files planted in a container) are in root-only directories, removed first and created
exclusively (``set -C``). The kernel refusing a syscall (EPERM
in an unprivileged container) still counts as "performed": the engine must see the attempt.

``rule`` is the Falconet default rule an action should trigger; ``falco_rule`` the upstream
Falco stable rule, when one covers the behaviour.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from falconet.simulate.contexts import Context

ActionFn = Callable[[Context], None]


class ActionError(RuntimeError):
    """The action could not perform its behaviour (the message says why)."""


@dataclass(frozen=True)
class Action:
    """One simulated behaviour.

    Attributes:
        name: identifier used by ``falconet simulate`` and suites.
        summary: one line: what it does.
        where: contexts it can run in; the first is the default.
        rule: the default-ruleset rule it should trigger (``None``: none expected).
        falco_rule: the Falco stable rule it should trigger, if any.
        privileged: run in a privileged container by default (CAP_SYS_ADMIN etc.).
        needs_python: uses ``payload.py`` (the host's /usr/bin/python3).
        fn: performs the behaviour in a context.
        unsupported: ``() -> reason | None``: why this kernel cannot exhibit the behaviour at
            all (then the action is "not applicable" rather than skipped or failed).
    """

    name: str
    summary: str
    where: tuple[str, ...]
    rule: str | None
    falco_rule: str | None
    privileged: bool
    needs_python: bool
    fn: ActionFn
    unsupported: Callable[[], str | None] | None = None

    def not_applicable(self) -> str | None:
        return self.unsupported() if self.unsupported is not None else None

    def run(self, ctx: Context) -> None:
        if ctx.kind not in self.where:
            raise ActionError(f"action '{self.name}' does not run in {ctx.kind} "
                              f"(supported: {', '.join(self.where)})")
        if self.needs_python and not ctx.has_python:
            raise ActionError("needs /usr/bin/python3 on the host")
        self.fn(ctx)


ACTIONS: dict[str, Action] = {}


def action(name: str, summary: str, *, where: tuple[str, ...], rule: str | None,
           falco_rule: str | None = None, privileged: bool = False,
           needs_python: bool = False,
           unsupported: Callable[[], str | None] | None = None) -> Callable[[ActionFn], ActionFn]:
    def register(fn: ActionFn) -> ActionFn:
        if name in ACTIONS:
            raise ValueError(f"duplicate action {name}")
        ACTIONS[name] = Action(name, summary, where, rule, falco_rule, privileged, needs_python,
                               fn, unsupported)
        return fn
    return register


def _ok(p, what: str) -> None:
    """Fail the action when a setup step (not the attack itself) did not work."""
    if p.returncode != 0:
        raise ActionError(f"{what} failed (rc {p.returncode}): {(p.stderr or p.stdout).strip()[-300:]}")


# ---------------------------------------------------------------------------------- shells

@action("shell_in_container", "run `sh -c 'exit 0'` in a container (docker/kubectl exec)",
        where=("runc", "docker"), rule="Shell Spawned in Container")
def _shell_in_container(ctx: Context) -> None:
    ctx.exec(["sh", "-c", "exit 0"])


@action("terminal_shell_in_container", "a shell with a pseudo-terminal in a container (exec -it)",
        where=("docker", "runc"), rule="Terminal Shell in Container",
        falco_rule="Terminal shell in container")
def _terminal_shell(ctx: Context) -> None:
    if ctx.kind == "docker":
        ctx.exec(["sh", "-c", "exit 0"], tty=True)
    else:
        _ok(ctx.payload("pty_shell"), "pty shell")


# ------------------------------------------------------------------------------ escapes

@action("nsenter_host", "`nsenter -t 1 -m -u -i -n -p -- true` (joins PID 1's namespaces)",
        where=("runc", "docker", "host"), rule="Host Namespace Entered with nsenter")
def _nsenter(ctx: Context) -> None:
    ctx.exec(["nsenter", "-t", "1", "-m", "-u", "-i", "-n", "-p", "--", "true"])


@action("setns_in_container", "setns() into a UTS namespace from a container",
        where=("runc", "docker"), rule="Namespace Change via setns in Container",
        needs_python=True)
def _setns(ctx: Context) -> None:
    _ok(ctx.payload("setns_uts"), "setns")


@action("unshare_in_container", "`unshare -U true`: a new user namespace from a container",
        where=("runc", "docker"), rule="Unshare Namespace in Container")
def _unshare(ctx: Context) -> None:
    ctx.exec(["unshare", "-U", "true"])


@action("mount_in_container", "`mount -t tmpfs` inside a container (EPERM unless privileged)",
        where=("runc", "docker"), rule="Mount Attempted in Container")
def _mount(ctx: Context) -> None:
    with ctx.private_dir() as d:
        p = ctx.exec(["mount", "-t", "tmpfs", "falconet-sim", d])
        if p.returncode == 0:
            ctx.exec(["umount", d])


@action("release_agent_write", "write a file named release_agent (cgroup escape pattern) in a "
        "privileged container; a private file, never a real cgroup",
        where=("runc", "docker"), rule="Cgroup release_agent Write",
        falco_rule="Detect release_agent File Container Escapes", privileged=True)
def _release_agent(ctx: Context) -> None:
    with ctx.private_dir() as d:
        _ok(ctx.sh(f"set -C; echo /bin/true > {d}/release_agent"), "release_agent write")


@action("proc_root_write", "write a file through /proc/self/root/...",
        where=("runc", "docker", "host"), rule="Write Through /proc Root Link")
def _proc_root(ctx: Context) -> None:
    with ctx.private_dir() as d:
        _ok(ctx.sh(f"set -C; echo x > /proc/self/root{d}/procroot"), "write through /proc root")


# --------------------------------------------------------------------- credential access

@action("read_shadow", "`cat /etc/shadow`", where=("host", "runc"),
        rule="Sensitive File Read by Untrusted Program",
        falco_rule="Read sensitive file untrusted")
def _read_shadow(ctx: Context) -> None:
    _ok(ctx.exec(["cat", "/etc/shadow"]), "cat /etc/shadow")


def _plant_and_read(ctx: Context, directory: str, filename: str) -> None:
    # create a fake credential inside the container, read it with cat, remove it
    # (container only, root-only directories: the rules need these exact names)
    f = f"{directory}/{filename}"
    _ok(ctx.sh(f"mkdir -p {directory} && rm -f {f} && (set -C; echo falconet-sim-fake > {f}) && "
               f"cat {f} >/dev/null; rc=$?; rm -f {f}; exit $rc"), f"read {f}")


@action("read_ssh_key", "plant and `cat` /root/.ssh/id_rsa in a container",
        where=("runc", "docker"), rule="Sensitive File Read by Untrusted Program")
def _read_ssh_key(ctx: Context) -> None:
    _plant_and_read(ctx, "/root/.ssh", "id_rsa")


@action("read_cloud_credentials", "plant and `cat` /root/.aws/credentials in a container",
        where=("runc", "docker"), rule="Sensitive File Read by Untrusted Program")
def _read_aws(ctx: Context) -> None:
    _plant_and_read(ctx, "/root/.aws", "credentials")


@action("read_serviceaccount_token", "plant and `cat` the Kubernetes service-account token",
        where=("runc", "docker"), rule="Sensitive File Read by Untrusted Program")
def _read_token(ctx: Context) -> None:
    _plant_and_read(ctx, "/var/run/secrets/kubernetes.io/serviceaccount", "token")


@action("search_private_keys", "`grep -r 'BEGIN RSA PRIVATE'` over an empty private directory",
        where=("runc", "docker", "host"), rule="Search for Private Keys or Credentials",
        falco_rule="Search Private Keys or Passwords")
def _grep_keys(ctx: Context) -> None:
    ctx.exec(["grep", "-r", "BEGIN RSA PRIVATE", "/nonexistent-falconet-sim"])


@action("find_aws_credentials", "`find /nonexistent/.aws/credentials`",
        where=("runc", "docker", "host"), rule="Search for Private Keys or Credentials",
        falco_rule="Find AWS Credentials")
def _find_aws(ctx: Context) -> None:
    ctx.exec(["find", "/nonexistent-falconet-sim/.aws/credentials"])


@action("symlink_sensitive_file", "`ln -s /etc/shadow /tmp/...`", where=("runc", "docker", "host"),
        rule="Link to Sensitive File Created", falco_rule="Create Symlink Over Sensitive Files")
def _symlink(ctx: Context) -> None:
    with ctx.private_dir() as d:
        _ok(ctx.exec(["ln", "-s", "/etc/shadow", f"{d}/link"]), "symlink")


@action("hardlink_sensitive_file", "`ln /etc/shadow /tmp/...` in a container",
        where=("runc", "docker"), rule="Link to Sensitive File Created",
        falco_rule="Create Hardlink Over Sensitive Files")
def _hardlink(ctx: Context) -> None:
    ctx.exec(["touch", "/etc/shadow"])
    with ctx.private_dir() as d:
        ctx.exec(["ln", "/etc/shadow", f"{d}/hlink"])


@action("directory_traversal_read", "open /etc/../etc/../etc/passwd", where=("runc", "docker", "host"),
        rule=None, falco_rule="Directory traversal monitored file read", needs_python=True)
def _traversal(ctx: Context) -> None:
    _ok(ctx.payload("open_path", "/etc/../etc/../etc/passwd"), "traversal open")


@action("server_reads_shadow_late", "a process named nginx, running for 6.5 s, reads /etc/shadow",
        where=("host", "runc"), rule="Sensitive File Read by Untrusted Program",
        falco_rule="Read sensitive file trusted after startup", needs_python=True)
def _server_late(ctx: Context) -> None:
    _ok(ctx.payload("sleep_then_read", "6.5", "/etc/shadow", argv0="nginx"), "late read")


# ------------------------------------------------------------------------ writes, drift

@action("write_below_etc", "create and remove /etc/falconet-sim.conf", where=("runc", "docker", "host"),
        rule="Write Below Etc")
def _write_etc(ctx: Context) -> None:
    # the suite expects this name; /etc is root-only, and whatever was there (a symlink) is
    # removed first and the file created exclusively
    _ok(ctx.sh("f=/etc/falconet-sim.conf; rm -f $f; (set -C; echo falconet-sim > $f); rc=$?; "
               "rm -f $f; exit $rc"), "write /etc")


@action("write_below_bin", "copy a binary into /usr/bin in a container, then remove it",
        where=("runc", "docker"), rule="Write Below Binary Directory")
def _write_bin(ctx: Context) -> None:
    _ok(ctx.sh("f=/usr/bin/falconet-sim-drop; rm -f $f; cp /bin/busybox $f; rc=$?; rm -f $f; "
               "exit $rc"), "write /usr/bin")


@action("package_manager_in_container", "`dpkg -l` in a container", where=("runc", "docker"),
        rule="Package Manager Run in Container")
def _pkg(ctx: Context) -> None:
    ctx.exec(["dpkg", "-l"])


@action("exec_from_tmp_in_container", "copy busybox to /tmp/... in a container and run it",
        where=("runc", "docker"), rule="Execution from /tmp in Container",
        falco_rule="Drop and execute new binary in container")
def _exec_tmp(ctx: Context) -> None:
    with ctx.private_dir() as d:
        _ok(ctx.sh(f"cp /bin/busybox {d}/true && {d}/true"), "exec from /tmp")


@action("drop_and_exec_in_container", "write a new binary to /root in a container and run it "
        "(upper layer)", where=("runc", "docker"), rule="New Binary Executed in Container",
        falco_rule="Drop and execute new binary in container")
def _drop_exec(ctx: Context) -> None:
    with ctx.private_dir("/root") as d:
        _ok(ctx.sh(f"cp /bin/busybox {d}/true && {d}/true"), "drop and exec")


@action("exec_from_dev_shm", "copy a binary to /dev/shm and run it", where=("host",),
        rule="Execution from /dev/shm", falco_rule="Execution from /dev/shm")
def _exec_shm(ctx: Context) -> None:
    with ctx.private_dir("/dev/shm") as d:
        _ok(ctx.sh(f"cp /bin/true {d}/true && {d}/true"), "exec from /dev/shm")


@action("memfd_exec", "copy a binary into a memfd and execute it (fileless)",
        where=("host", "runc", "docker"), rule="Fileless Execution via memfd",
        falco_rule="Fileless execution via memfd_create", needs_python=True)
def _memfd(ctx: Context) -> None:
    _ok(ctx.payload("memfd_exec"), "memfd exec")


# -------------------------------------------------------------------------- process chains

@action("service_spawns_shell", "a process named nginx runs `sh -c id`", where=("host", "runc", "docker"),
        rule="Service Spawned Unexpected Child", falco_rule="Run shell untrusted",
        needs_python=True)
def _service_shell(ctx: Context) -> None:
    _ok(ctx.payload("spawn", "sh", "-c", "id", argv0="nginx"), "nginx spawn")


@action("cron_spawns_netcat", "a process named cron runs `nc -w 1 127.0.0.1 9`",
        where=("runc", "docker"), rule="Cron or SSH Daemon Spawned Network Tool",
        needs_python=True)
def _cron_nc(ctx: Context) -> None:
    _ok(ctx.payload("spawn", "nc", "-w", "1", "127.0.0.1", "9", argv0="cron"), "cron spawn")


@action("system_user_interactive", "user nobody runs a program named login",
        where=("host",), rule=None, falco_rule="System user interactive", needs_python=True)
def _system_user(ctx: Context) -> None:
    with ctx.private_dir() as d:
        # nobody must reach the link: the directory is root's, 0755, nothing else can write it
        _ok(ctx.exec(["chmod", "755", d]), "chmod private directory")
        _ok(ctx.exec(["ln", "-s", "/bin/true", f"{d}/login"]), "login link")
        _ok(ctx.payload("run_as", "65534", f"{d}/login"), "run as nobody")


@action("redis_lua_injection", "a process named redis-server runs sh, which writes a .lua "
        "script below a private temporary directory and removes it (the Lua-injection pattern "
        "of docs/authoring.md)", where=("host", "runc", "docker"), rule=None, needs_python=True)
def _redis_lua(ctx: Context) -> None:
    _ok(ctx.payload("spawn", "sh", "-c", "d=$(mktemp -d /tmp/falconet-sim-redis.XXXXXX) && "
                    "echo 'return redis.call(\"ping\")' > $d/exploit.lua; rm -rf $d",
                    argv0="redis-server"), "redis-server spawn")


# ------------------------------------------------------------------------------ network

@action("reverse_shell", "a shell whose stdin/stdout/stderr is a loopback TCP connection",
        where=("runc", "docker", "host"), rule="Reverse Shell Redirect",
        falco_rule="Redirect STDOUT/STDIN to Network Connection in Container", needs_python=True)
def _revshell(ctx: Context) -> None:
    _ok(ctx.payload("reverse_shell"), "reverse shell")


@action("netcat_remote_exec", "`nc 127.0.0.1 PORT -e /bin/true` to a loopback listener",
        where=("runc", "docker"), rule="Netcat Remote Code Execution",
        falco_rule="Netcat Remote Code Execution in Container", needs_python=True)
def _nc_exec(ctx: Context) -> None:
    _ok(ctx.payload("netcat_exec"), "nc -e")


@action("miner_pool_connect", "connect to 127.0.0.1:3333 (stratum port; local listener)",
        where=("runc", "docker", "host"), rule="Connection to Mining Pool Port", needs_python=True)
def _miner_port(ctx: Context) -> None:
    _ok(ctx.payload("connect_port", "3333"), "connect 3333")


@action("stratum_handshake", "send stratum `mining.subscribe`/`mining.authorize` lines to a "
        "loopback listener on a random port", where=("docker", "runc", "host"),
        rule="Cryptominer Stratum Protocol", needs_python=True)
def _stratum(ctx: Context) -> None:
    _ok(ctx.payload("stratum_handshake", "0"), "stratum handshake")


@action("miner_command_line", "run `true -o stratum+tcp://pool.minexmr.com:4444` (a miner's argv)",
        where=("host", "runc", "docker"), rule="Crypto Miner Launched")
def _miner_cmd(ctx: Context) -> None:
    ctx.exec(["true", "-o", "stratum+tcp://pool.minexmr.com:4444", "-u", "falconet-sim"])


@action("ssh_nonstandard_port", "a program named ssh connects to 192.0.2.10:4444 (TEST-NET), "
        "routed into the privileged container's own loopback", where=("runc",), rule=None,
        falco_rule="Disallowed SSH Connection Non Standard Port", privileged=True,
        needs_python=True)
def _ssh_port(ctx: Context) -> None:
    # the container has its own network namespace with only lo: route everything into it so
    # the non-blocking connect gets EINPROGRESS and no packet can leave
    ctx.exec(["ip", "route", "replace", "default", "dev", "lo"])
    _ok(ctx.payload("connect_port", "4444", "192.0.2.10", argv0="ssh"), "ssh connect")


#: what the falco-stable suite makes the *engine* resolve the in-cluster API server name to
#: (suite ``engine_hosts``): a loopback address, so the connection stays in the container's own
#: network namespace and nothing leaves it
K8S_API_SERVER_NAME = "kubernetes.default.svc.cluster.local"
K8S_API_SERVER_TEST_ADDRESS = "127.0.0.44"


@action("k8s_api_server_connect", f"connect to {K8S_API_SERVER_TEST_ADDRESS}:6443 (loopback "
        "listener), the address the falco-stable suite's engine resolves "
        f"{K8S_API_SERVER_NAME} to", where=("runc", "docker"), rule=None,
        falco_rule="Contact K8S API Server From Container", needs_python=True)
def _k8s_api_server(ctx: Context) -> None:
    _ok(ctx.payload("connect_port", "6443", K8S_API_SERVER_TEST_ADDRESS), "connect 6443")


@action("packet_socket_in_container", "`arping -I lo` opens an AF_PACKET socket",
        where=("runc", "docker"), rule="Packet Socket Opened in Container",
        falco_rule="Packet socket created in container")
def _packet(ctx: Context) -> None:
    ctx.exec(["arping", "-c", "1", "-w", "1", "-I", "lo", "127.0.0.1"])


# ------------------------------------------------------------------------ ptrace, kernel

@action("ptrace_attach", "PTRACE_ATTACH to a child process", where=("host", "runc", "docker"),
        rule="Ptrace Attach to Process", falco_rule="PTRACE attached to process",
        needs_python=True)
def _ptrace(ctx: Context) -> None:
    _ok(ctx.payload("ptrace_attach"), "ptrace attach")


@action("ptrace_traceme", "ptrace(PTRACE_TRACEME) anti-debugging", where=("host", "runc", "docker"),
        rule="Ptrace Anti-Debug", falco_rule="PTRACE anti-debug attempt", needs_python=True)
def _traceme(ctx: Context) -> None:
    _ok(ctx.payload("ptrace_traceme"), "ptrace traceme")


def _no_module_support() -> str | None:
    if not os.path.exists("/proc/modules"):
        return ("this kernel has no loadable module support (no /proc/modules, "
                "CONFIG_MODULES=n): init_module/finit_module do not exist to be called or traced")
    return None


@action("kernel_module_load", "finit_module() of a file of zeros (rejected by the kernel)",
        where=("host", "runc", "docker"), rule="Kernel Module Load",
        falco_rule="Linux Kernel Module Injection Detected", needs_python=True,
        unsupported=_no_module_support)
def _kmod(ctx: Context) -> None:
    _ok(ctx.payload("kernel_module"), "finit_module")


@action("bpf_prog_load", "load and unload a two-instruction socket-filter eBPF program",
        where=("host",), rule="BPF Program Loaded by Unexpected Process", needs_python=True)
def _bpf(ctx: Context) -> None:
    _ok(ctx.payload("bpf_prog_load"), "bpf prog load")


@action("debugfs_in_privileged_container", "run a program named debugfs in a privileged container",
        where=("runc", "docker"), rule=None,
        falco_rule="Debugfs Launched in Privileged Container", privileged=True)
def _debugfs(ctx: Context) -> None:
    # a busybox link named debugfs: the process is called debugfs, busybox exits "not found"
    with ctx.private_dir() as d:
        ctx.sh(f"ln -s /bin/busybox {d}/debugfs && {d}/debugfs; exit 0")


# ------------------------------------------------------------------------ logs, setuid

@action("log_truncate", "create and truncate /var/log/falconet-sim.log",
        where=("runc", "docker", "host"), rule="Log File Truncated",
        falco_rule="Clear Log Activities")
def _log_truncate(ctx: Context) -> None:
    # Falco's rule wants the file directly in /var/log (fd.directory): root-only, so a fixed
    # name, whatever was there removed first and the file created exclusively
    _ok(ctx.sh("mkdir -p /var/log; f=/var/log/falconet-sim.log; rm -f $f; "
               "(set -C; echo entry > $f) && : >| $f; rc=$?; rm -f $f; exit $rc"), "truncate log")


@action("shell_history_tamper", "truncate /root/.ash_history in a container",
        where=("runc", "docker"), rule="Shell History Tampering")
def _history(ctx: Context) -> None:
    # (container only, the name the rule needs; /root is root-only)
    # created exclusively, then truncated (O_TRUNC, what the rule looks for)
    _ok(ctx.sh("mkdir -p /root; f=/root/.ash_history; rm -f $f; (set -C; : > $f) && : >| $f; "
               "rc=$?; rm -f $f; exit $rc"), "truncate history")


@action("shred_file", "`shred -u` a private temporary file", where=("runc", "docker"), rule=None,
        falco_rule="Remove Bulk Data from Disk")
def _shred(ctx: Context) -> None:
    # run shred as its own process (busybox sh would run the applet in-process, no execve)
    with ctx.private_dir() as d:
        ctx.exec(["touch", f"{d}/shred"])
        ctx.exec(["shred", "-u", f"{d}/shred"])


@action("setuid_bit", "`chmod u+s` on a private temporary file", where=("runc", "docker", "host"),
        rule="Setuid or Setgid Bit Set")
def _setuid(ctx: Context) -> None:
    with ctx.private_dir() as d:
        _ok(ctx.sh(f"set -C; : > {d}/suid && chmod u+s {d}/suid"), "chmod u+s")


# ------------------------------------------------------------------- evasion (issue 19)
# The same attacks, done the way attackers hide them from syscall-based engines: through
# io_uring, through path indirection, under a trusted program's name, and by moving a file into
# place instead of opening it there (docs/evasion.md; suites/evasion.yaml).

@action("iouring_read_shadow", "IORING_OP_OPENAT + READ of /etc/shadow (no open/read syscall)",
        where=("host", "runc"), rule="Sensitive File Read by Untrusted Program",
        falco_rule="Read sensitive file untrusted", needs_python=True)
def _iouring_shadow(ctx: Context) -> None:
    _ok(ctx.payload("iouring_read", "/etc/shadow"), "io_uring read")


@action("iouring_open_in_container", "IORING_OP_OPENAT + READ of /etc/hostname in a container",
        where=("runc",), rule="io_uring File or Network Operation in Container",
        needs_python=True)
def _iouring_open(ctx: Context) -> None:
    _ok(ctx.payload("iouring_read", "/etc/hostname"), "io_uring read")


@action("iouring_connect", "IORING_OP_SOCKET + CONNECT to a loopback listener (no socket/connect "
        "syscall)", where=("runc",), rule="io_uring File or Network Operation in Container",
        needs_python=True)
def _iouring_connect(ctx: Context) -> None:
    _ok(ctx.payload("iouring_connect"), "io_uring connect")


@action("iouring_reverse_shell", "a shell whose stdin is a socket made, connected and installed "
        "through io_uring (fixed slot + IORING_OP_FIXED_FD_INSTALL; no socket/connect/dup)",
        where=("runc", "host"), rule="Reverse Shell Redirect",
        falco_rule="Redirect STDOUT/STDIN to Network Connection in Container", needs_python=True)
def _iouring_revshell(ctx: Context) -> None:
    _ok(ctx.payload("iouring_reverse_shell"), "io_uring reverse shell")


#: the one fixed name the move/link rules need (root-only /etc, removed first and afterwards)
MOVED_CONF = "/etc/falconet-sim-moved.conf"
LINKED_BIN = "/usr/bin/falconet-sim-linked"


@action("rename_into_etc", "write a file in a private directory, then `mv` it into /etc",
        where=("runc", "host"), rule="File Moved or Linked Into /etc or a Binary Directory")
def _rename_etc(ctx: Context) -> None:
    with ctx.private_dir() as d:
        _ok(ctx.sh(f"f={MOVED_CONF}; rm -f $f; (set -C; echo x > {d}/staged) && "
                   f"mv {d}/staged $f; rc=$?; rm -f $f; exit $rc"), "mv into /etc")


@action("iouring_rename_into_etc", "IORING_OP_RENAMEAT of a staged file into /etc (no rename "
        "syscall)", where=("runc", "host"), rule="File Moved or Linked Into /etc or a Binary "
        "Directory", needs_python=True)
def _iouring_rename_etc(ctx: Context) -> None:
    with ctx.private_dir() as d:
        _ok(ctx.sh(f"rm -f {MOVED_CONF}; set -C; echo x > {d}/staged"), "stage")
        try:
            _ok(ctx.payload("iouring_rename", f"{d}/staged", MOVED_CONF), "io_uring rename")
        finally:
            ctx.exec(["rm", "-f", MOVED_CONF])


@action("link_into_bin", "hard-link a staged file into /usr/bin in a container",
        where=("runc",), rule="File Moved or Linked Into /etc or a Binary Directory")
def _link_bin(ctx: Context) -> None:
    with ctx.private_dir() as d:
        _ok(ctx.sh(f"f={LINKED_BIN}; rm -f $f; (set -C; echo x > {d}/staged) && "
                   f"ln {d}/staged $f; rc=$?; rm -f $f; exit $rc"), "ln into /usr/bin")


@action("symlink_dir_read_shadow", "read /etc/shadow through a symlink to /etc/. made earlier by "
        "another process", where=("host", "runc"), rule="Sensitive File Read by Untrusted Program")
def _symlink_read(ctx: Context) -> None:
    with ctx.private_dir() as d:
        _ok(ctx.exec(["ln", "-s", "/etc/.", f"{d}/cfg"]), "symlink")
        _ok(ctx.exec(["cat", f"{d}/cfg/shadow"]), "cat through the symlink")


@action("proc_root_read_shadow", "`cat /proc/self/root/etc/shadow` (a magic link)",
        where=("host", "runc"), rule="Sensitive File Read by Untrusted Program")
def _proc_root_read(ctx: Context) -> None:
    _ok(ctx.exec(["cat", "/proc/self/root/etc/shadow"]), "cat /proc/self/root/etc/shadow")


@action("bind_mount_read_shadow", "bind-mount /etc under another name and read shadow there (in a "
        "private mount namespace: the mount never exists on the host)", where=("host",),
        rule="Sensitive File Read by Untrusted Program")
def _bind_read(ctx: Context) -> None:
    with ctx.private_dir() as d:
        # unshare -m with private propagation: the bind mount lives only in that namespace, so
        # the private directory removed afterwards is always the empty directory it was made as
        _ok(ctx.exec(["mkdir", f"{d}/view"]), "mkdir")
        _ok(ctx.exec(["unshare", "-m", "--propagation", "private", "sh", "-c",
                      f"mount --bind /etc {d}/view && cat {d}/view/shadow >/dev/null"]),
            "bind-mounted read")


@action("open_by_handle_shadow", "name_to_handle_at + open_by_handle_at of /etc/shadow (the "
        "\"shocker\" primitive: no path at open)", where=("host",),
        rule="Sensitive File Read by Untrusted Program", needs_python=True)
def _by_handle(ctx: Context) -> None:
    _ok(ctx.payload("open_by_handle", "/etc/shadow"), "open_by_handle_at")


@action("masquerade_copy_sshd", "a copy of cat named sshd reads /etc/shadow (sshd is trusted by "
        "name)", where=("host",), rule="Sensitive File Read by Untrusted Program")
def _masq_copy(ctx: Context) -> None:
    with ctx.private_dir() as d:
        _ok(ctx.sh(f"cp /bin/cat {d}/sshd && {d}/sshd /etc/shadow >/dev/null"), "fake sshd")


@action("exec_argv0_sshd", "`exec -a sshd cat /etc/shadow` (a fake argv[0])", where=("host",),
        rule="Sensitive File Read by Untrusted Program", falco_rule="Read sensitive file untrusted")
def _argv0(ctx: Context) -> None:
    _ok(ctx.exec(["bash", "-c", "exec -a sshd cat /etc/shadow >/dev/null"]), "exec -a")


@action("prctl_rename_read_shadow", "prctl(PR_SET_NAME, \"sshd\") then read /etc/shadow",
        where=("host",), rule="Sensitive File Read by Untrusted Program",
        falco_rule="Read sensitive file untrusted", needs_python=True)
def _prctl_read(ctx: Context) -> None:
    _ok(ctx.payload("renamed_read", "sshd", "/etc/shadow"), "renamed read")


# ------------------------------------------------------------------------------ benign

@action("benign_ls", "`ls /` (benign: must raise nothing)", where=("runc", "docker", "host"),
        rule=None)
def _benign_ls(ctx: Context) -> None:
    _ok(ctx.exec(["ls", "/"]), "ls")


@action("benign_read_passwd", "`cat /etc/passwd` (benign)", where=("host", "runc", "docker"),
        rule=None)
def _benign_passwd(ctx: Context) -> None:
    _ok(ctx.exec(["cat", "/etc/passwd"]), "cat /etc/passwd")


@action("benign_tmp_write", "create, read and remove a file in /tmp (benign)",
        where=("runc", "docker", "host"), rule=None)
def _benign_tmp(ctx: Context) -> None:
    with ctx.private_dir() as d:
        _ok(ctx.exec(["touch", f"{d}/benign"]), "touch")
        _ok(ctx.exec(["cat", f"{d}/benign"]), "cat")
        _ok(ctx.exec(["rm", "-f", f"{d}/benign"]), "rm")


# the actions for Falco's incubating and sandbox rules live in their own module
from falconet.simulate import actions_upstream  # noqa: E402,F401  (registers on import)


def get_action(name: str) -> Action:
    try:
        return ACTIONS[name]
    except KeyError:
        raise KeyError(f"unknown action '{name}' (see `falconet simulate --list`)") from None
