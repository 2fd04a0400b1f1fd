"""The syscall/event schema: every event type the eBPF collector produces, with its parameters.

This is the contract between the collector (producer, ``falconet.collector``) and the state parser
and field extractors (consumers, ``falconet.state``, ``falconet.state.fields``). Documented
for humans in ``docs/collector.md``.

Conventions (see also ``docs/architecture.md``):

- Events are *exit* events only: ``Event(source="syscall", type=<name>, res=<return value>)``.
  ``res`` is the raw return value (negative errno on failure) and is **not** in ``args``.
- ``args`` keys are the Falco parameter names (``evt.arg.<name>``). Where Falco's exit event has the
  return value as a named parameter (``fd`` of ``open``), the name is also in ``args`` with the same
  value as ``res``, so ``evt.arg.fd`` works as in Falco.
- The open family and the I/O calls carry ``ftype``, hidden from ``evt.args`` as ``cgroup_id``:
  what the kernel found at the fd. Bit 0: known; bit 1: a directory; bit 2 (opens): the open
  created its file (FMODE_CREATED, shown as ``O_F_CREATED`` in ``evt.arg.flags``); bits 16-19: the inode's
  S_IFMT bits (``ftype >> 4 & 0xf000 == 0xc000`` is a socket). The kernel filter passes
  directories, which may be dirfds or fchdir targets (docs/kernel-filter.md).
- Every event carries ``cgroup_id`` (``bpf_get_current_cgroup_id()``, the cgroup v2 id) and ``cpu``
  (``bpf_get_smp_processor_id()``: ``evt.cpu``), both hidden from ``evt.args``; ``uid`` and
  ``gid`` of the calling task are carried by ``execve``/``execveat`` (and ``set*id`` results).
- Paths are exactly as the syscall received them (relative paths are not resolved: the state parser
  resolves them against the thread's cwd or ``dirfd``). ``dirfd`` is ``AT_FDCWD`` = -100 when unset.
- Socket addresses are decoded to flat args: ``family`` (2 AF_INET, 10 AF_INET6, 1 AF_UNIX),
  ``sip``/``sport`` (local side when known, else ``""``/0), ``dip``/``dport`` (the peer the call
  names), ``path`` for AF_UNIX, and ``tuple`` in Falco's text form ``sip:sport->dip:dport``.
"""

from __future__ import annotations

from dataclasses import dataclass

# ------------------------------------------------------------------------------- parameter types
FD = "fd"              # int64 file descriptor (may be negative: AT_FDCWD = -100, or an errno)
INT = "int"            # signed 64-bit integer
UINT = "uint"          # unsigned 64-bit integer
FLAGS = "flags"        # bit flags (raw integer value as the syscall received it)
MODE = "mode"          # file mode bits
PATH = "path"          # a file system path (str)
STR = "str"            # other text (str)
ARGV = "argv"          # list[str]
PID = "pid"            # host pid/tid (int)
UID = "uid"            # uint32 user id (4294967295 = unset/-1)
GID = "gid"            # uint32 group id
IP = "ip"              # IPv4/IPv6 address as text ("" when unknown)
PORT = "port"          # uint16
BOOL = "bool"          # Python bool
DEV = "dev"            # device number (kernel new_encode_dev form, like /proc/<pid>/stat tty_nr)
SOCKTUPLE = "tuple"    # "sip:sport->dip:dport" text

# drop-accounting categories (Falco's n_drops_buffer_<category>_exit names)
CAT_CLONE = "clone_fork"
CAT_EXECVE = "execve"
CAT_CONNECT = "connect"
CAT_OPEN = "open"
CAT_DIR_FILE = "dir_file"
CAT_CLOSE = "close"
CAT_PROC = "proc"
CAT_OTHER = "other_interest"
#: all categories, in the order the kernel's per-category drop counters use (index = position)
CATEGORIES: tuple[str, ...] = (CAT_CLONE, CAT_EXECVE, CAT_CONNECT, CAT_OPEN, CAT_DIR_FILE,
                               CAT_CLOSE, CAT_PROC, CAT_OTHER)

#: AT_FDCWD as the kernel defines it
AT_FDCWD = -100


@dataclass(frozen=True, slots=True)
class Param:
    """One event parameter: its Falco name and its type (one of the constants above)."""

    name: str
    type: str


@dataclass(frozen=True, slots=True)
class EventSchema:
    """One event type the collector produces.

    Attributes:
        name: ``evt.type`` (the syscall name without ``sys_``, or ``procfork``/``procexit``).
        params: the ``args`` keys and types, in Falco's order (``cgroup_id`` and ``cpu`` are
            always added).
        category: drop-accounting category (see :data:`CATEGORIES`).
        state: True if process/fd state tracking needs it whatever the rules say (the base set).
        tracepoint: the kernel tracepoint it comes from (syscalls: the sys_exit dispatcher).
        net: a network syscall (its fd-state partners ``socket``/``close`` join the base set).
        file: a file syscall that creates fds (``close`` joins the base set).
    """

    name: str
    params: tuple[Param, ...]
    category: str
    state: bool = False
    tracepoint: str = ""
    net: bool = False
    file: bool = False

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)


def _p(spec: str) -> tuple[Param, ...]:
    """Parse ``"fd:fd name:path flags:flags"`` into params (keeps the table below readable)."""
    out = []
    for item in spec.split():
        name, _, typ = item.partition(":")
        out.append(Param(name, typ))
    return tuple(out)


_ADDR = "family:int sip:ip sport:port dip:ip dport:port path:path tuple:tuple"
_EXEC = ("filename:path argv:argv exe:str cwd:path exepath:path comm:str uid:uid gid:gid "
         "euid:uid egid:gid loginuid:uid tty:dev sid:pid pgid:pid vpgid:pid vpid:pid vtid:pid "
         "cap_effective:uint cap_permitted:uint cap_inheritable:uint exe_ino:uint "
         "exe_ino_ctime:uint exe_ino_mtime:uint exe_writable:bool "
         "exe_from_memfd:bool exe_upper_layer:bool env:argv ppid:pid")
_CLONE = "child_tid:pid child_pid:pid flags:flags"


def _sys(name: str, params: str, category: str, **kw: bool) -> EventSchema:
    return EventSchema(name, _p(params + " cgroup_id:uint cpu:uint"), category,
                       tracepoint="raw_syscalls:sys_exit", **kw)


#: every event type the eBPF collector can produce, by name
EVENTS: dict[str, EventSchema] = {e.name: e for e in (
    # --- process lifecycle
    _sys("clone", _CLONE, CAT_CLONE, state=True),
    _sys("clone3", _CLONE, CAT_CLONE, state=True),
    _sys("fork", _CLONE, CAT_CLONE, state=True),
    _sys("vfork", _CLONE, CAT_CLONE, state=True),
    _sys("execve", _EXEC, CAT_EXECVE, state=True),
    _sys("execveat", "dirfd:fd flags:flags " + _EXEC, CAT_EXECVE, state=True),
    EventSchema("procfork", _p("child_tid:pid child_pid:pid parent_tid:pid parent_pid:pid "
                               "child_comm:str cgroup_id:uint cpu:uint"),
                CAT_CLONE, state=True, tracepoint="raw_tracepoint:sched_process_fork"),
    EventSchema("procexit", _p("status:int cgroup_id:uint cpu:uint"), CAT_PROC, state=True,
                tracepoint="sched:sched_process_exit"),
    _sys("chdir", "path:path", CAT_DIR_FILE, state=True),
    _sys("fchdir", "fd:fd", CAT_DIR_FILE, state=True),
    _sys("chroot", "path:path", CAT_DIR_FILE),
    _sys("setuid", "uid:uid", CAT_OTHER, state=True),
    _sys("setgid", "gid:gid", CAT_OTHER, state=True),
    _sys("setreuid", "ruid:uid euid:uid", CAT_OTHER, state=True),
    _sys("setregid", "rgid:gid egid:gid", CAT_OTHER, state=True),
    _sys("setresuid", "ruid:uid euid:uid suid:uid", CAT_OTHER, state=True),
    _sys("setresgid", "rgid:gid egid:gid sgid:gid", CAT_OTHER, state=True),
    _sys("capset", "cap_effective:uint cap_permitted:uint cap_inheritable:uint", CAT_OTHER),
    _sys("prctl", "option:int arg2_str:str arg2_int:int", CAT_OTHER),
    _sys("ptrace", "request:int pid:pid addr:uint data:uint", CAT_OTHER),
    _sys("setns", "fd:fd nstype:flags", CAT_OTHER),
    _sys("unshare", "flags:flags", CAT_OTHER),
    # --- files
    _sys("open", "fd:fd name:path flags:flags mode:mode ftype:uint", CAT_OPEN, file=True),
    _sys("openat", "fd:fd dirfd:fd name:path flags:flags mode:mode ftype:uint", CAT_OPEN, file=True),
    _sys("openat2", "fd:fd dirfd:fd name:path flags:flags mode:mode resolve:flags ftype:uint", CAT_OPEN,
         file=True),
    _sys("creat", "fd:fd name:path mode:mode ftype:uint", CAT_OPEN, file=True),
    _sys("memfd_create", "fd:fd name:str flags:flags", CAT_OPEN, file=True),
    _sys("close", "fd:fd", CAT_CLOSE),
    _sys("dup", "fd:fd oldfd:fd", CAT_OTHER, file=True),
    _sys("dup2", "fd:fd oldfd:fd newfd:fd", CAT_OTHER, file=True),
    _sys("dup3", "fd:fd oldfd:fd newfd:fd flags:flags", CAT_OTHER, file=True),
    _sys("unlink", "path:path", CAT_DIR_FILE),
    _sys("unlinkat", "dirfd:fd name:path flags:flags", CAT_DIR_FILE),
    _sys("rename", "oldpath:path newpath:path", CAT_DIR_FILE),
    _sys("renameat", "olddirfd:fd oldpath:path newdirfd:fd newpath:path", CAT_DIR_FILE),
    _sys("renameat2", "olddirfd:fd oldpath:path newdirfd:fd newpath:path flags:flags",
         CAT_DIR_FILE),
    _sys("mkdir", "path:path mode:mode", CAT_DIR_FILE),
    _sys("mkdirat", "dirfd:fd path:path mode:mode", CAT_DIR_FILE),
    _sys("chmod", "filename:path mode:mode", CAT_DIR_FILE),
    _sys("fchmod", "fd:fd mode:mode", CAT_DIR_FILE),
    _sys("fchmodat", "dirfd:fd filename:path mode:mode", CAT_DIR_FILE),
    _sys("link", "oldpath:path newpath:path", CAT_DIR_FILE),
    _sys("linkat", "olddir:fd oldpath:path newdir:fd newpath:path flags:flags", CAT_DIR_FILE),
    _sys("symlink", "target:path linkpath:path", CAT_DIR_FILE),
    _sys("symlinkat", "target:path linkdirfd:fd linkpath:path", CAT_DIR_FILE),
    _sys("mount", "dev:path dir:path type:str flags:flags", CAT_OTHER),
    _sys("umount2", "name:path flags:flags", CAT_OTHER),
    _sys("init_module", "length:uint uargs:str", CAT_OTHER),
    _sys("finit_module", "fd:fd uargs:str flags:flags", CAT_OTHER),
    _sys("bpf", "cmd:int fd:fd", CAT_OTHER),
    _sys("userfaultfd", "fd:fd flags:flags", CAT_OTHER, file=True),
    # --- other fd-creating calls (Falco's parameter names; the fd tables learn each new fd)
    # fcntl: only F_DUPFD/F_DUPFD_CLOEXEC are traced unless a rule names fcntl (collector.md)
    _sys("fcntl", "fd:fd cmd:flags", CAT_OTHER),
    _sys("pipe", "fd1:fd fd2:fd ino:uint", CAT_OTHER),
    _sys("pipe2", "fd1:fd fd2:fd ino:uint flags:flags", CAT_OTHER),
    _sys("socketpair", "fd1:fd fd2:fd domain:int type:int proto:int", CAT_OTHER),
    _sys("pidfd_open", "fd:fd pid:pid flags:flags", CAT_OTHER),
    _sys("pidfd_getfd", "fd:fd pid_fd:fd target_fd:fd flags:flags", CAT_OTHER, file=True),
    _sys("eventfd", "fd:fd initval:uint", CAT_OTHER),
    _sys("eventfd2", "fd:fd initval:uint flags:flags", CAT_OTHER),
    _sys("epoll_create", "fd:fd size:int", CAT_OTHER),
    _sys("epoll_create1", "fd:fd flags:flags", CAT_OTHER),
    _sys("inotify_init", "fd:fd", CAT_OTHER),
    _sys("inotify_init1", "fd:fd flags:flags", CAT_OTHER),
    _sys("signalfd", "fd:fd", CAT_OTHER),
    _sys("signalfd4", "fd:fd flags:flags", CAT_OTHER),
    _sys("timerfd_create", "fd:fd clockid:int flags:flags", CAT_OTHER),
    # --- network
    _sys("socket", "fd:fd domain:int type:int proto:int", CAT_OTHER, net=True),
    _sys("connect", "fd:fd " + _ADDR, CAT_CONNECT, net=True),
    _sys("accept", "fd:fd listenfd:fd " + _ADDR, CAT_OTHER, net=True),
    _sys("accept4", "fd:fd listenfd:fd flags:flags " + _ADDR, CAT_OTHER, net=True),
    _sys("bind", "fd:fd " + _ADDR, CAT_OTHER, net=True),
    _sys("listen", "fd:fd backlog:int", CAT_OTHER, net=True),
    _sys("sendto", "fd:fd size:uint data:bytes ftype:uint " + _ADDR, CAT_OTHER, net=True),
    _sys("recvfrom", "fd:fd size:uint data:bytes ftype:uint " + _ADDR, CAT_OTHER, net=True),
    _sys("sendmsg", "fd:fd size:uint data:bytes ftype:uint " + _ADDR, CAT_OTHER, net=True),
    _sys("recvmsg", "fd:fd size:uint data:bytes ftype:uint " + _ADDR, CAT_OTHER, net=True),
    # --- I/O (data: the first collector.snaplen bytes; fd partners of both kinds)
    _sys("read", "fd:fd size:uint data:bytes ftype:uint", CAT_OTHER, net=True, file=True),
    _sys("write", "fd:fd size:uint data:bytes ftype:uint", CAT_OTHER, net=True, file=True),
    _sys("pread64", "fd:fd size:uint pos:uint data:bytes ftype:uint", CAT_OTHER, net=True, file=True),
    _sys("pwrite64", "fd:fd size:uint pos:uint data:bytes ftype:uint", CAT_OTHER, net=True, file=True),
    _sys("readv", "fd:fd size:uint data:bytes ftype:uint", CAT_OTHER, net=True, file=True),
    _sys("writev", "fd:fd size:uint data:bytes ftype:uint", CAT_OTHER, net=True, file=True),
    # issue 19: open_by_handle_at opens a file by handle (the "shocker" primitive); `path` is
    # the path the kernel opened (Falco's parameter name), resolved in the kernel
    _sys("open_by_handle_at", "fd:fd mountfd:fd flags:flags path:path", CAT_OPEN, file=True),
)}

#: Falco's base_syscalls repair set, adapted: always traced so process state is right.
BASE_STATE: frozenset[str] = frozenset(n for n, e in EVENTS.items() if e.state)
#: events that change the process table (or a process's identity): with collector.workers > 1
#: every worker sees them (docs/performance.md, "More than one core"): the state base set plus
#: the calls that change a process's credentials, session or root
LIFECYCLE: frozenset[str] = BASE_STATE | frozenset({
    "capset", "prctl", "setsid", "setpgid", "chroot", "unshare", "setns",
    "setfsuid", "setfsgid", "setgroups",
})
#: the calls that give a process a copy of an fd it or another process has (fcntl F_DUPFD*,
#: pidfd_getfd, with pidfd_open naming the other process): without them a socket or file put
#: on 0/1/2 that way would have no fd.* fields
FD_COPY_STATE: frozenset[str] = frozenset({"dup", "dup2", "dup3", "fcntl", "pidfd_open",
                                           "pidfd_getfd"})
#: joined when any fd-creating file syscall is traced (so fd tables don't grow stale)
FILE_STATE: frozenset[str] = frozenset({"close", "fchdir", "pipe", "pipe2"}) | FD_COPY_STATE
#: joined when any network syscall is traced (so fd.sip/fd.l4proto are known)
NET_STATE: frozenset[str] = frozenset({"socket", "bind", "close", "socketpair"}) | FD_COPY_STATE
#: events that are not system calls
NON_SYSCALL_EVENTS: frozenset[str] = frozenset({"procfork", "procexit"})


def selected_events(rule_types: set[str] | frozenset[str] | None) -> frozenset[str]:
    """The event types to trace for a ruleset's ``event_types("syscall")`` (``None`` = all).

    Returns the rules' types that the collector can produce plus the base state set, and the fd
    partners (``close``, ``socket``...) when file or network syscalls are traced. Types the
    collector does not produce are ignored here (see :func:`unsupported`).
    """
    if rule_types is None:
        return frozenset(EVENTS)
    chosen = {t for t in rule_types if t in EVENTS} | BASE_STATE
    if any(EVENTS[t].file for t in chosen):
        chosen |= FILE_STATE
    if any(EVENTS[t].net for t in chosen):
        chosen |= NET_STATE
    return frozenset(chosen)


def unsupported(rule_types: set[str] | frozenset[str] | None) -> frozenset[str]:
    """Rule event types the collector cannot produce (reported as a warning at start)."""
    if rule_types is None:
        return frozenset()
    return frozenset(t for t in rule_types if t not in EVENTS)


# ------------------------------------------------------------------------------- the universe
#: Falco event types that are not system calls (valid in ``evt.type`` conditions)
EXTRA_EVENT_TYPES: frozenset[str] = frozenset({
    "procexit", "procfork", "switch", "signaldeliver", "page_fault", "container", "pluginevent",
    "asyncevent", "notification", "infra", "cpu_hotplug", "drop", "scapevent", "procinfo",
    "k8s", "tracer", "mesos", "sysdigevent", "meta",
})

# x86_64 syscall table (name:number), generated from asm/unistd_64.h of Linux 6.1.
_X86_64 = (
    'read:0 write:1 open:2 close:3 stat:4 fstat:5 lstat:6 poll:7 lseek:8 mmap:9 mprotect:10 '
    'munmap:11 brk:12 rt_sigaction:13 rt_sigprocmask:14 rt_sigreturn:15 ioctl:16 pread64:17 '
    'pwrite64:18 readv:19 writev:20 access:21 pipe:22 select:23 sched_yield:24 mremap:25 '
    'msync:26 mincore:27 madvise:28 shmget:29 shmat:30 shmctl:31 dup:32 dup2:33 pause:34 '
    'nanosleep:35 getitimer:36 alarm:37 setitimer:38 getpid:39 sendfile:40 socket:41 connect:42 '
    'accept:43 sendto:44 recvfrom:45 sendmsg:46 recvmsg:47 shutdown:48 bind:49 listen:50 '
    'getsockname:51 getpeername:52 socketpair:53 setsockopt:54 getsockopt:55 clone:56 fork:57 '
    'vfork:58 execve:59 exit:60 wait4:61 kill:62 uname:63 semget:64 semop:65 semctl:66 shmdt:67 '
    'msgget:68 msgsnd:69 msgrcv:70 msgctl:71 fcntl:72 flock:73 fsync:74 fdatasync:75 '
    'truncate:76 ftruncate:77 getdents:78 getcwd:79 chdir:80 fchdir:81 rename:82 mkdir:83 '
    'rmdir:84 creat:85 link:86 unlink:87 symlink:88 readlink:89 chmod:90 fchmod:91 chown:92 '
    'fchown:93 lchown:94 umask:95 gettimeofday:96 getrlimit:97 getrusage:98 sysinfo:99 '
    'times:100 ptrace:101 getuid:102 syslog:103 getgid:104 setuid:105 setgid:106 geteuid:107 '
    'getegid:108 setpgid:109 getppid:110 getpgrp:111 setsid:112 setreuid:113 setregid:114 '
    'getgroups:115 setgroups:116 setresuid:117 getresuid:118 setresgid:119 getresgid:120 '
    'getpgid:121 setfsuid:122 setfsgid:123 getsid:124 capget:125 capset:126 rt_sigpending:127 '
    'rt_sigtimedwait:128 rt_sigqueueinfo:129 rt_sigsuspend:130 sigaltstack:131 utime:132 '
    'mknod:133 uselib:134 personality:135 ustat:136 statfs:137 fstatfs:138 sysfs:139 '
    'getpriority:140 setpriority:141 sched_setparam:142 sched_getparam:143 '
    'sched_setscheduler:144 sched_getscheduler:145 sched_get_priority_max:146 '
    'sched_get_priority_min:147 sched_rr_get_interval:148 mlock:149 munlock:150 mlockall:151 '
    'munlockall:152 vhangup:153 modify_ldt:154 pivot_root:155 _sysctl:156 prctl:157 '
    'arch_prctl:158 adjtimex:159 setrlimit:160 chroot:161 sync:162 acct:163 settimeofday:164 '
    'mount:165 umount2:166 swapon:167 swapoff:168 reboot:169 sethostname:170 setdomainname:171 '
    'iopl:172 ioperm:173 create_module:174 init_module:175 delete_module:176 '
    'get_kernel_syms:177 query_module:178 quotactl:179 nfsservctl:180 getpmsg:181 putpmsg:182 '
    'afs_syscall:183 tuxcall:184 security:185 gettid:186 readahead:187 setxattr:188 '
    'lsetxattr:189 fsetxattr:190 getxattr:191 lgetxattr:192 fgetxattr:193 listxattr:194 '
    'llistxattr:195 flistxattr:196 removexattr:197 lremovexattr:198 fremovexattr:199 tkill:200 '
    'time:201 futex:202 sched_setaffinity:203 sched_getaffinity:204 set_thread_area:205 '
    'io_setup:206 io_destroy:207 io_getevents:208 io_submit:209 io_cancel:210 '
    'get_thread_area:211 lookup_dcookie:212 epoll_create:213 epoll_ctl_old:214 '
    'epoll_wait_old:215 remap_file_pages:216 getdents64:217 set_tid_address:218 '
    'restart_syscall:219 semtimedop:220 fadvise64:221 timer_create:222 timer_settime:223 '
    'timer_gettime:224 timer_getoverrun:225 timer_delete:226 clock_settime:227 '
    'clock_gettime:228 clock_getres:229 clock_nanosleep:230 exit_group:231 epoll_wait:232 '
    'epoll_ctl:233 tgkill:234 utimes:235 vserver:236 mbind:237 set_mempolicy:238 '
    'get_mempolicy:239 mq_open:240 mq_unlink:241 mq_timedsend:242 mq_timedreceive:243 '
    'mq_notify:244 mq_getsetattr:245 kexec_load:246 waitid:247 add_key:248 request_key:249 '
    'keyctl:250 ioprio_set:251 ioprio_get:252 inotify_init:253 inotify_add_watch:254 '
    'inotify_rm_watch:255 migrate_pages:256 openat:257 mkdirat:258 mknodat:259 fchownat:260 '
    'futimesat:261 newfstatat:262 unlinkat:263 renameat:264 linkat:265 symlinkat:266 '
    'readlinkat:267 fchmodat:268 faccessat:269 pselect6:270 ppoll:271 unshare:272 '
    'set_robust_list:273 get_robust_list:274 splice:275 tee:276 sync_file_range:277 '
    'vmsplice:278 move_pages:279 utimensat:280 epoll_pwait:281 signalfd:282 timerfd_create:283 '
    'eventfd:284 fallocate:285 timerfd_settime:286 timerfd_gettime:287 accept4:288 '
    'signalfd4:289 eventfd2:290 epoll_create1:291 dup3:292 pipe2:293 inotify_init1:294 '
    'preadv:295 pwritev:296 rt_tgsigqueueinfo:297 perf_event_open:298 recvmmsg:299 '
    'fanotify_init:300 fanotify_mark:301 prlimit64:302 name_to_handle_at:303 '
    'open_by_handle_at:304 clock_adjtime:305 syncfs:306 sendmmsg:307 setns:308 getcpu:309 '
    'process_vm_readv:310 process_vm_writev:311 kcmp:312 finit_module:313 sched_setattr:314 '
    'sched_getattr:315 renameat2:316 seccomp:317 getrandom:318 memfd_create:319 '
    'kexec_file_load:320 bpf:321 execveat:322 userfaultfd:323 membarrier:324 mlock2:325 '
    'copy_file_range:326 preadv2:327 pwritev2:328 pkey_mprotect:329 pkey_alloc:330 '
    'pkey_free:331 statx:332 io_pgetevents:333 rseq:334 pidfd_send_signal:424 '
    'io_uring_setup:425 io_uring_enter:426 io_uring_register:427 open_tree:428 move_mount:429 '
    'fsopen:430 fsconfig:431 fsmount:432 fspick:433 pidfd_open:434 clone3:435 close_range:436 '
    'openat2:437 pidfd_getfd:438 faccessat2:439 process_madvise:440 epoll_pwait2:441 '
    'mount_setattr:442 quotactl_fd:443 landlock_create_ruleset:444 landlock_add_rule:445 '
    'landlock_restrict_self:446 memfd_secret:447 process_mrelease:448 futex_waitv:449 '
    'set_mempolicy_home_node:450 ')

#: x86_64 syscall name -> number
SYSCALL_NUMBERS: dict[str, int] = {
    name: int(nr) for name, _, nr in (item.partition(":") for item in _X86_64.split())
}
#: every name ``evt.type`` can take on x86_64: all syscalls plus Falco's non-syscall events
ALL_EVENT_TYPES: frozenset[str] = frozenset(SYSCALL_NUMBERS) | EXTRA_EVENT_TYPES


def is_known_event_type(name: str) -> bool:
    """True if ``name`` is a valid ``evt.type`` value (rules warn or fail on unknown types)."""
    return name in ALL_EVENT_TYPES
