// SPDX-License-Identifier: GPL-2.0
// Falconet syscall collector (compiled by bcc at start; see docs/collector.md).
//
// Portability rule: NO kernel struct dereference through headers (the installed headers may belong
// to another kernel). We use tracepoint context words at fixed ABI offsets, bpf_get_current_*
// helpers, bpf_probe_read_user*, and for task fields bpf_probe_read_kernel at offsets resolved from
// /sys/kernel/btf/vmlinux by collector/btf.py and passed as -DOFF_* macros.
//
// Pattern: exit events only. A raw tracepoint on sys_exit tail-calls the selected syscall's
// handler, which reads the arguments from pt_regs, copies user strings / sockaddrs, and emits one
// record into the ring buffer of its CPU. The Python side (collector/program.py) appends one exit
// handler per selected syscall and defines EV_<name> ids, sizes, SELF_TGID and the BTF offsets.

#include <uapi/linux/ptrace.h>
#include <linux/sched.h>

#ifndef PATH_LEN
#define PATH_LEN 512
#endif
#ifndef ARGV_LEN
#define ARGV_LEN 1024
#endif
#ifndef ENV_LEN
#define ENV_LEN 0
#endif
#ifndef SOCK_LEN
#define SOCK_LEN 128
#endif
#ifndef RINGBUF_PAGES
#define RINGBUF_PAGES 256
#endif
#ifndef ARGS_MAP_SIZE
#define ARGS_MAP_SIZE 32768
#endif

// counters (per-CPU array; index layout mirrored in collector/program.py COUNTERS)
#define C_EVENTS 0          // records the kernel tried to emit
#define C_DROP_BASE 1       // 1..8: ring buffer full, by category (syscalls.CATEGORIES order)
#define C_ARGS_FULL 9       // enter args map full (its exit then counts C_NO_ENTER: the loss)
#define C_NO_ENTER 10       // exec exit without a saved enter: the event is lost (a drop)
#define C_USER_READ 11      // user memory read failed (event emitted with empty value)
#define C_KERNEL_READ 12    // kernel memory read failed (event emitted with 0 value)
#define C_BCAST_DROP 13     // a lifecycle copy for another worker lost (its ring was full)
#define C_WORKER_FULL 14    // worker_of full: a new process is hashed, not kept on its parent's worker
// Events lost before any ring write (each a drop, counted once, where the handler gives up):
#define C_LOST_SCRATCH 15   // a per-CPU scratch or job slot lookup failed
#define C_LOST_REGS 16      // the syscall's pt_regs could not be read (no arguments)
#define C_LOST_IOU 17       // io_uring: no scratch slot at submit or completion
#define C_EXEC_FN_FULL 18   // exec_fn full: an exec is emitted without its filename (not a drop)
#define N_COUNTERS 20

#define CAT_CLONE 0
#define CAT_EXECVE 1
#define CAT_CONNECT 2
#define CAT_OPEN 3
#define CAT_DIR_FILE 4
#define CAT_CLOSE 5
#define CAT_PROC 6
#define CAT_OTHER 7

struct hdr_t {
    u64 ts;
    u64 cgroup_id;
    s64 res;
    u32 tid;
    u32 pid;
    u16 id;
    u16 len0;
    u16 len1;
    u16 len2;
    u64 a[6];
    u32 cpu;             // bpf_get_smp_processor_id(): evt.cpu (after a[] so older offsets hold)
    u32 pad;
};                       // 96 bytes

struct args_t {
    u64 a[6];
    u32 id;
    u32 pad;
};

struct rec_base { struct hdr_t h; };
struct rec_comm { struct hdr_t h; char s0[16]; };
struct rec_sock { struct hdr_t h; char s0[SOCK_LEN]; };

// Records with strings are variable-sized: built in a per-CPU scratch buffer, strings packed one
// after the other (s0 at the base, s1 at base + len0, s2 at base + len0 + len1; each length
// includes the NUL), then copied with bpf_ringbuf_output. A typical open is ~130 bytes instead of
// 600, so the same ring buffer absorbs four times the burst.
#define N_EXEC_WORDS 24
struct exec_head {
    struct hdr_t h;
    u64 x[N_EXEC_WORDS];
    char comm[16];
};                              // then filename, argv (NUL separated), env (NUL separated)
#define STR_BASE sizeof(struct hdr_t)
#define EXEC_BASE sizeof(struct exec_head)
#ifndef MAX_REC
#define MAX_REC 16384           // power of two, >= 2 * largest record (set by program.py)
#endif
#define POS_MASK (MAX_REC / 2 - 1)
struct scratch_t { char b[MAX_REC]; };

struct fname_t { char s[PATH_LEN]; };

BPF_HASH(args_map, u32, struct args_t, ARGS_MAP_SIZE);
BPF_HASH(exec_fn, u32, struct fname_t, 4096);
BPF_PERCPU_ARRAY(scratch, struct fname_t, 1);
BPF_PERCPU_ARRAY(rec_scratch, struct scratch_t, 1);
BPF_PERCPU_ARRAY(counters, u64, N_COUNTERS);

static __always_inline void count(u32 idx) {
    u64 *c = counters.lookup(&idx);
    if (c) *c += 1;
}

static __always_inline int is_self(u64 pt) {
    return (u32)(pt >> 32) == SELF_TGID;
}

// Mask a length right before it is used as a read size: an asm barrier stops clang from moving
// the check away from the use, which would leave the verifier with an unbounded register.
#define BOUND(var, mask) asm volatile("%0 &= %1" : "+r"(var) : "i"(mask))

// ctl[0]: 1 while the consumer sleeps on epoll with nothing to do (set by collector/source.py
// before it waits, cleared by the first producer that sees it). Busy, the consumer polls and the
// producers commit without wakeups (a wakeup is an irq_work, often an IPI: +1.8 us per event);
// idle, the first record wakes it at once, so an idle engine never wakes on a timer.
// With collector.workers > 1, ctl[w] is worker w's flag (each worker sleeps on its own rings).
#ifndef NR_WORKERS
#define NR_WORKERS 1
#endif
#if NR_WORKERS > 4
#define CTL_SLOTS NR_WORKERS
#else
#define CTL_SLOTS 4
#endif
BPF_ARRAY(ctl, u32, CTL_SLOTS);

// The commit flag for a record into a ring of worker w: wake it if it sleeps.
static __always_inline u64 wake_flag(u32 w) {
    u32 *sleeping = ctl.lookup(&w);
    if (sleeping && *sleeping) {
        *sleeping = 0;
        return BPF_RB_FORCE_WAKEUP;
    }
    return BPF_RB_NO_WAKEUP;
}

// Count one record about to be emitted (C_EVENTS) and choose its commit flags in the same map
// lookup: no wakeup, except every 256th record of this CPU (see program.rings_code), or when
// the consumer (worker w's) sleeps.
static __always_inline u64 count_event(u32 w) {
    u32 k = C_EVENTS;
    u64 *c = counters.lookup(&k);
    if (c) {
        *c += 1;
        if ((*c & 255) == 0)
            return BPF_RB_FORCE_WAKEUP;
    }
    return wake_flag(w);
}

// Ring buffers events0..N-1 (one per CPU group) and ring_reserve()/ring_output(), generated by
// program.py: producers on different CPUs never contend for one ring's lock. With one shared ring
// we measured sporadic reserve failures at only ~25k events/s on a 2-vCPU VM, all gone when every
// producer ran on one CPU.
// With collector.workers N > 1 there are N groups of these rings, one group per worker process
// (ring = worker * RINGS_PER_WORKER + CPU group), and ring_reserve/ring_output take the worker.
// @RINGS@

// ---------------------------------------------------------------- workers (collector.workers)
// Per ring: records lost because it was full (the owner's record or a lifecycle copy).
BPF_PERCPU_ARRAY(ring_drops, u64, NR_RINGS);
static __always_inline void ring_drop(u32 w) {
    u32 i = w * RINGS_PER_WORKER + ring_cpu();
    u64 *c = ring_drops.lookup(&i);
    if (c) *c += 1;
}

#if NR_WORKERS > 1
// Which worker owns a thread group (docs/performance.md, "Live"): worker_of[tgid], written at
// sched_process_fork for a new process (the child stays on its parent's worker: the fds it
// inherits are in that worker's tables) and deleted at the leader's exit; a process without an
// entry (a root: it was running before the engine) is hashed as falconet.workers.partition
// does. WORKER_SKIP marks the engine's own worker processes (not traced, like SELF_TGID).
#define WORKER_SKIP 0xffffffffu
#define FOREIGN_ID 0x8000          // in hdr_t.id: a lifecycle copy for a worker that is not the owner
#ifndef WORKER_MAP_SIZE
#define WORKER_MAP_SIZE 65536
#endif
BPF_HASH(worker_of, u32, u32, WORKER_MAP_SIZE);

// collector.partition (PARTITION_KEY, falconet.workers.partition): 0 lineage (worker_of holds
// the inherited owners), 2 cgroup (the record's cgroup v2 id hashed; worker_of holds only the
// WORKER_SKIP marks). 1 (tgid: every process hashed) compiles, but a live run refuses it: its
// fork handoff deadlocked between live workers (falconet.workers.live.LIVE_KEYS).
#ifndef PARTITION_KEY
#define PARTITION_KEY 0
#endif
static __always_inline u32 owner_of(u32 tgid, u64 cgroup_id) {
    u32 *w = worker_of.lookup(&tgid);
    if (w)
        return *w;
#if PARTITION_KEY == 2
    u32 x = ((u32)cgroup_id ^ (u32)(cgroup_id >> 32)) * 0x9E3779B1u;
#else
    u32 x = tgid * 0x9E3779B1u;
#endif
    x ^= x >> 16;
    return x % NR_WORKERS;
}

// A lifecycle record (is_bcast, generated from syscalls.LIFECYCLE) goes to every worker: the
// owner's copy as is, the others' with FOREIGN_ID set (they apply it to their process table and
// do not run the rules on it). Called before the owner's copy is committed.
static __always_inline void broadcast(void *rec, u32 size, u32 owner) {
    struct hdr_t *h = (struct hdr_t *)rec;
    u16 id = h->id;
    h->id = id | FOREIGN_ID;
    BOUND(size, MAX_REC - 1);
#pragma unroll
    for (u32 i = 0; i < NR_WORKERS; i++) {
        if (i == owner)
            continue;
        if (ring_output(i, rec, size, wake_flag(i)) != 0) {
            count(C_BCAST_DROP);
            ring_drop(i);
        }
    }
    h->id = id;
}
#else
#define WORKER_SKIP 0xffffffffu
static __always_inline u32 owner_of(u32 tgid, u64 cgroup_id) { return 0; }
#endif

// ---------------------------------------------------------------- kernel reads at BTF offsets
static __always_inline u64 kread_u64(const void *base, long off) {
    u64 v = 0;
    if (base && bpf_probe_read_kernel(&v, sizeof(v), (const char *)base + off) < 0)
        count(C_KERNEL_READ);
    return v;
}
static __always_inline u32 kread_u32(const void *base, long off) {
    u32 v = 0;
    if (base && bpf_probe_read_kernel(&v, sizeof(v), (const char *)base + off) < 0)
        count(C_KERNEL_READ);
    return v;
}
static __always_inline void *kread_ptr(const void *base, long off) {
    return (void *)kread_u64(base, off);
}

// ------------------------------------------------------------------ kernel paths (issue 19)
// The path of an open file as the kernel resolved it: a bounded walk up its dentry chain
// (d_parent, d_name), crossing mounts (mount.mnt_mountpoint, mnt_parent), and stopping at the
// current task's root (fs->root), so a container sees its own paths. Tracepoint programs cannot
// call d_path(); this is the same walk, without its seqlock retries: a rename racing the walk
// can give a mixed path (the event is then still reported, with the value the walk saw).
// Placed before the exit plumbing because emit_exec uses it (exe_file -> proc.exepath).
#if defined(OFF_FILE_MNT) && defined(OFF_DENTRY_PARENT) && defined(OFF_MOUNT_MNT) && \
    defined(OFF_MOUNT_PARENT) && defined(OFF_MOUNT_MOUNTPOINT) && defined(OFF_VFSMOUNT_ROOT) && \
    defined(OFF_TASK_FS) && defined(OFF_FS_ROOT) && defined(OFF_DENTRY_NAME)
#define HAVE_KPATH 1
#define KPATH_DEPTH 16          // path components kept (a deeper path is reported unknown)
#define KPATH_STEPS 24          // walk steps (components + mount crossings)
// Walk state lives in a per-CPU map value, not in registers: the verifier does not track what a
// map value holds, so every iteration starts from the same abstract state and is pruned. Kept in
// registers, the pointers' refinements (non-zero, equal to another register) made every path a
// new state and the walk exceeded the verifier's 1M instruction budget.
struct kpath_t {
    u64 name[KPATH_DEPTH];          // component name pointers, leaf first
    u64 dentry, vfsmnt, mnt, mnt_root, root_dentry, root_mnt, root_sb;
    u32 n, done, p, start, sbwalk;
};
BPF_PERCPU_ARRAY(kpath_scratch, struct kpath_t, 1);

// One pointer read without a branch (the helper zeroes the destination when the read fails).
static __always_inline u64 kp_u64(u64 base, long off) {
    u64 v;
    bpf_probe_read_kernel(&v, sizeof(v), (const char *)base + off);
    return v;
}

// Append the path of (vfsmnt, dentry) at *pos as a NUL-terminated string of at most PATH_LEN
// bytes; returns its length with the NUL, 0 when unknown (too deep, too long, a failed read).
static __always_inline u16 put_kpath(char *buf, u32 *pos, void *vfsmnt, void *dentry) {
    u32 zero = 0;
    struct kpath_t *kp = kpath_scratch.lookup(&zero);
    if (!kp || !dentry || !vfsmnt)
        return 0;
    // fs->root is a struct path {mnt, dentry}: one read
    u64 fs = kp_u64(bpf_get_current_task(), OFF_TASK_FS);
    u64 root[2];
    bpf_probe_read_kernel(root, sizeof(root), (const char *)fs + OFF_FS_ROOT);
    kp->root_mnt = root[0];
    kp->root_dentry = root[1];
    kp->dentry = (u64)dentry;
    kp->vfsmnt = (u64)vfsmnt;
    kp->mnt = (u64)vfsmnt - OFF_MOUNT_MNT;
    kp->mnt_root = kp_u64((u64)vfsmnt, OFF_VFSMOUNT_ROOT);
    kp->n = 0;
    kp->done = 0;
    kp->sbwalk = 0;
#ifdef OFF_VFSMOUNT_SB
    kp->root_sb = kp_u64(root[0], OFF_VFSMOUNT_SB);
#else
    kp->root_sb = 0;
#endif
    for (int i = 0; i < KPATH_STEPS; i++) {
        u64 d = kp->dentry;
        if (d == kp->root_dentry && (kp->vfsmnt == kp->root_mnt || kp->sbwalk)) {
            kp->done = 1;
            break;
        }
        // d_parent and d_name.name in one read when they sit 16 bytes apart (d_name.hash_len
        // between them), as on 6.x kernels; else two reads
        u64 dn[3];
#if OFF_DENTRY_NAME == OFF_DENTRY_PARENT + 16
        bpf_probe_read_kernel(dn, sizeof(dn), (const char *)d + OFF_DENTRY_PARENT);
#else
        dn[0] = kp_u64(d, OFF_DENTRY_PARENT);
        dn[2] = kp_u64(d, OFF_DENTRY_NAME);
#endif
        u64 parent = dn[0];
#ifdef OFF_VFSMOUNT_SB
        // A bind mount of a directory of the root's own filesystem (mount --bind /etc /x): the
        // mount's root is not its filesystem's root. Report the file's path in that filesystem
        // (/etc/shadow, not /x/shadow): keep walking dentries up to the process's root or the
        // filesystem's root instead of crossing to the mountpoint.
        if (!kp->sbwalk && d == kp->mnt_root && parent && d != parent && kp->root_sb &&
            kp_u64(kp->vfsmnt, OFF_VFSMOUNT_SB) == kp->root_sb)
            kp->sbwalk = 1;
        if (kp->sbwalk && (d == parent || !parent)) {
            kp->done = 1;                           // the filesystem's root
            break;
        }
#endif
        if (!kp->sbwalk && (d == kp->mnt_root || d == parent || !parent)) {
            u64 m = kp->mnt;
            u64 mp[2];                              // mnt_parent, mnt_mountpoint
#if OFF_MOUNT_MOUNTPOINT == OFF_MOUNT_PARENT + 8
            bpf_probe_read_kernel(mp, sizeof(mp), (const char *)m + OFF_MOUNT_PARENT);
#else
            mp[0] = kp_u64(m, OFF_MOUNT_PARENT);
            mp[1] = kp_u64(m, OFF_MOUNT_MOUNTPOINT);
#endif
            if (!mp[0] || mp[0] == m) {             // the namespace's root mount
                kp->done = 1;
                break;
            }
            kp->dentry = mp[1];
            kp->mnt = mp[0];
            kp->vfsmnt = mp[0] + OFF_MOUNT_MNT;
            kp->mnt_root = kp_u64(mp[0] + OFF_MOUNT_MNT, OFF_VFSMOUNT_ROOT);
            continue;
        }
        u32 n = kp->n;
        if (n >= KPATH_DEPTH)
            break;
        kp->name[n & (KPATH_DEPTH - 1)] = dn[2];
        kp->n = n + 1;
        kp->dentry = parent;
    }
    if (!kp->done)
        return 0;
    kp->p = *pos;
    kp->start = *pos;
    if (kp->n == 0) {
        u32 p = kp->p;
        BOUND(p, POS_MASK);
        buf[p] = '/';
        kp->p = p + 1;
    }
    for (int j = 0; j < KPATH_DEPTH; j++) {
        u32 n = kp->n;
        if (j >= n)
            break;
        u32 p = kp->p;
        if (p - kp->start > PATH_LEN - 257)         // room for one more component and the NUL
            return 0;
        u32 idx = (n - 1 - j) & (KPATH_DEPTH - 1);
        BOUND(p, POS_MASK);
        buf[p] = '/';
        p++;
        BOUND(p, POS_MASK);
        long r = bpf_probe_read_kernel_str(buf + p, 256, (void *)kp->name[idx]);
        if (r <= 1)
            return 0;
        kp->p = p + (u32)r - 1;
    }
    u32 p = kp->p;
    BOUND(p, POS_MASK);
    buf[p] = 0;
    p++;
    *pos = p;
    return (u16)(p - kp->start);
}

// The walk is too many verifier states to inline into a handler (the exec handler hit the 1M
// instruction limit), so the handler leaves its record in rec_scratch, says what to append in
// kpath_job, and tail-calls falconet_kpath (kpath_progs[0]), which appends and emits. If the
// tail call fails the handler emits the record itself without the path.
#define KPATH_EXEC 0            // length into exec_head.x[18] bits 16..31
#define KPATH_LEN1 1            // length into hdr.len1 (the record's second string)
#define KPATH_LEN0 2            // length into hdr.len0 (the record's first string)
// kf: 1 = the kernel filter's decision waits for the path (the requested path passes no
// clause, the kernel's may: falconet_kpath_kf decides on it); kf_* what that decision needs
struct kpath_job_t {
    u64 file; u32 pos; u16 cat; u16 where;
    u32 kf; u32 kf_id; u64 kf_flags; s64 kf_res; u64 kf_pt; u32 kf_start; u32 kf_n;
};
BPF_PERCPU_ARRAY(kpath_job, struct kpath_job_t, 1);
BPF_PROG_ARRAY(kpath_progs, 2);

static __always_inline int kpath_job_set(void *file, u32 pos, u16 cat, u16 where) {
    u32 zero = 0;
    struct kpath_job_t *j = kpath_job.lookup(&zero);
    if (!j)
        return 0;
    j->file = (u64)file;
    j->pos = pos;
    j->cat = cat;
    j->where = where;
    j->kf = 0;
    return 1;
}

// The struct file of fd in the current task's fd table (0 if none).
static __always_inline void *fd_file(s64 fd) {
#if defined(OFF_TASK_FILES) && defined(OFF_FILES_FDT) && defined(OFF_FDT_FD) && defined(OFF_FDT_MAX)
    if (fd < 0)
        return 0;
    u64 fdt = kp_u64(kp_u64(bpf_get_current_task(), OFF_TASK_FILES), OFF_FILES_FDT);
    if (!fdt)
        return 0;
#if OFF_FDT_MAX == 0 && OFF_FDT_FD == 8
    u64 t[2];                                       // max_fds (u32) and fd in one read
    bpf_probe_read_kernel(t, sizeof(t), (const char *)fdt);
    u64 max = t[0] & 0xffffffff, arr = t[1];
#else
    u64 max = kp_u64(fdt, OFF_FDT_MAX) & 0xffffffff, arr = kp_u64(fdt, OFF_FDT_FD);
#endif
    if ((u64)fd >= max || !arr)
        return 0;
    return (void *)kp_u64(arr, 8 * fd);
#else
    return 0;
#endif
}
#endif  // kernel paths

// ---------------------------------------------------------------- exit plumbing
// Syscall handlers run as tail calls of the raw_syscalls sys_exit raw tracepoint:
// ctx->args[0] is the task's struct pt_regs, ctx->args[1] the return value. The syscall
// arguments are still in pt_regs at exit (x86_64 ABI order di, si, dx, r10, r8, r9), so no enter
// program and no per-thread map are needed, except for exec: the old memory (filename) and
// registers are gone after a successful exec, so execve/execveat save what they need at enter.
#define SYS_RET(ctx) ((s64)((struct bpf_raw_tracepoint_args *)(ctx))->args[1])
#define SYS_REGS(ctx) ((const char *)((struct bpf_raw_tracepoint_args *)(ctx))->args[0])
// x86_64 struct pt_regs offsets (a stable ABI): r10 56, r9 64, r8 72, dx 96, si 104, di 112,
// orig_ax 120. One read of bytes 56..119 gets all six arguments.
#define REGS_ARGS_OFF 56
#define REGS_ORIG_AX 120
// tracepoint context of syscalls:sys_enter_X (used by the exec enter programs): args at 16 + 8*i
#define TP_ARG(ctx, i) (*(u64 *)((char *)(ctx) + 16 + 8 * (i)))

static __always_inline int save_args(void *ctx, u32 id, int nargs) {
    u64 pt = bpf_get_current_pid_tgid();
    if (is_self(pt))
        return 0;
    u32 tid = (u32)pt;
    struct args_t a = {};
    a.id = id;
    if (nargs > 0) a.a[0] = TP_ARG(ctx, 0);
    if (nargs > 1) a.a[1] = TP_ARG(ctx, 1);
    if (nargs > 2) a.a[2] = TP_ARG(ctx, 2);
    if (nargs > 3) a.a[3] = TP_ARG(ctx, 3);
    if (nargs > 4) a.a[4] = TP_ARG(ctx, 4);
    if (nargs > 5) a.a[5] = TP_ARG(ctx, 5);
    if (args_map.update(&tid, &a) != 0)
        count(C_ARGS_FULL);
    return 0;
}

#define TS_COMPAT 0x0002
// 32-bit (ia32) syscalls use another numbering: never decode them by the x86_64 table. Checked
// in the handlers (traced syscalls only), not in the dispatcher every syscall passes.
static __always_inline int is_compat(void) {
#ifdef OFF_TASK_TI_STATUS
    void *task = (void *)bpf_get_current_task();
    u32 status = 0;
    bpf_probe_read_kernel(&status, sizeof(status), (char *)task + OFF_TASK_TI_STATUS);
    return status & TS_COMPAT;
#else
    return 0;
#endif
}

// The six syscall arguments of the current syscall, from pt_regs at exit.
static __always_inline int take_args(void *ctx, struct args_t *out, u64 *pt) {
    *pt = bpf_get_current_pid_tgid();
    if (is_compat())
        return 0;
    u64 w[8];
    if (bpf_probe_read_kernel(w, sizeof(w), SYS_REGS(ctx) + REGS_ARGS_OFF) < 0) {
        count(C_LOST_REGS);
        return 0;
    }
    out->a[0] = w[7];       // di
    out->a[1] = w[6];       // si
    out->a[2] = w[5];       // dx
    out->a[3] = w[0];       // r10
    out->a[4] = w[2];       // r8
    out->a[5] = w[1];       // r9
    return 1;
}

static __always_inline void fill_hdr(struct hdr_t *h, u32 id, s64 res, u64 pt,
                                     const struct args_t *a) {
    h->ts = bpf_ktime_get_ns();
    h->cgroup_id = bpf_get_current_cgroup_id();
    h->res = res;
    h->tid = (u32)pt;
    h->pid = (u32)(pt >> 32);
    h->id = id;
    h->len0 = 0;
    h->len1 = 0;
    h->len2 = 0;
    h->cpu = bpf_get_smp_processor_id();
    h->pad = 0;
    if (a) {
        __builtin_memcpy(h->a, a->a, sizeof(h->a));
    } else {
        __builtin_memset(h->a, 0, sizeof(h->a));
    }
}

static __always_inline u16 ustr(char *dst, u32 size, u64 ptr) {
    if (!ptr)
        return 0;
    long n = bpf_probe_read_user_str(dst, size, (const void *)ptr);
    if (n < 0) {
        count(C_USER_READ);
        dst[0] = 0;
        return 0;
    }
    return (u16)n;
}

// bcc rewrites map calls only outside macros, hence a helper (inlined: the size stays constant
// for the verifier).
static __always_inline void *reserve(u32 size, u32 cat, u64 *flags) {
#if NR_WORKERS > 1 && PARTITION_KEY == 2
    u32 w = owner_of(bpf_get_current_pid_tgid() >> 32, bpf_get_current_cgroup_id());
#else
    u32 w = owner_of(bpf_get_current_pid_tgid() >> 32, 0);
#endif
    if (w == WORKER_SKIP)
        return 0;
    *flags = count_event(w);
    void *r = ring_reserve(w, size);
    if (!r) {
        count(C_DROP_BASE + cat);
        ring_drop(w);
    }
    return r;
}

// Commit a reserved record of event ``id``; a lifecycle record is copied to the other workers
// first (the id is a constant at each call site: the test folds away for the others).
static __always_inline void submit(void *r, u32 size, u64 fl, u32 id) {
#if NR_WORKERS > 1
    if (is_bcast(id))
        broadcast(r, size, owner_of(((struct hdr_t *)r)->pid, ((struct hdr_t *)r)->cgroup_id));
#endif
    bpf_ringbuf_submit(r, fl);
}

#define RESERVE(rec_type, cat)                                              \
    u64 fl_;                                                                \
    struct rec_type *r = reserve(sizeof(struct rec_type), (cat), &fl_);     \
    if (!r)                                                                 \
        return 0;

static __always_inline int emit_base(void *ctx, u32 id, u32 cat) {
    struct args_t a;
    u64 pt;
    if (!take_args(ctx, &a, &pt))
        return 0;
    RESERVE(rec_base, cat);
    fill_hdr(&r->h, id, SYS_RET(ctx), pt, &a);
    submit(r, sizeof(*r), fl_, id);
    return 0;
}

// The per-CPU record buffer; a failed lookup (never seen: the slot is preallocated) loses the
// caller's event, so it is counted here, once: every caller gives up on a NULL.
static __always_inline char *scratch_buf(void) {
    u32 zero = 0;
    char *b = (char *)rec_scratch.lookup(&zero);
    if (!b)
        count(C_LOST_SCRATCH);
    return b;
}

static __always_inline u64 kf_gen(void) {
#if defined(OFF_TASK_START_TIME)
    void *task = (void *)bpf_get_current_task();
    void *leader = kread_ptr(task, OFF_TASK_GROUP_LEADER);
    return kread_u64(leader, OFF_TASK_START_TIME) | 1;
#else
    return 1;
#endif
}

// The kernel filter's proc.name terms (issue 18): the comm of each process's last successful
// execve, as the execve record reports it to userspace, where it is proc.name until the next
// exec (falconet.state: prctl(PR_SET_NAME) renames only thread.comm). Keyed by tgid, valid for
// the thread-group leader's start time (a reused tgid never matches); recorded before the
// record is emitted, removed again when the ring refuses the record (userspace then keeps the
// previous name: unknown here, every name term holds).
struct kf_exec_t { u64 gen; char comm[16]; };
BPF_TABLE("lru_hash", u32, struct kf_exec_t, kf_exec, 65536);

static __always_inline int output(char *buf, u32 size, u32 cat) {
    // the record's process, not the current task (an io_uring completion may run elsewhere)
    u32 w = owner_of(((struct hdr_t *)buf)->pid, ((struct hdr_t *)buf)->cgroup_id);
    if (w == WORKER_SKIP)
        return 0;
    u64 fl = count_event(w);
    BOUND(size, MAX_REC - 1);
#if NR_WORKERS > 1
    if (is_bcast(((struct hdr_t *)buf)->id))
        broadcast(buf, size, w);
#endif
    if (ring_output(w, buf, size, fl) != 0) {
        count(C_DROP_BASE + cat);
        ring_drop(w);
        if (cat == CAT_EXECVE) {
            u32 tg = ((struct hdr_t *)buf)->pid;
            kf_exec.delete(&tg);
        }
    }
    return 0;
}

// Append a user string at *pos (bounded for the verifier); returns the stored length.
static __always_inline u16 put_ustr(char *buf, u32 *pos, u32 max, u64 ptr) {
    u32 p = *pos;
    BOUND(p, POS_MASK);
    u16 n = ustr(buf + p, max, ptr);
    *pos = p + n;
    return n;
}

static __always_inline int emit_strs(void *ctx, u32 id, u32 cat, int nstr, int i0, int i1,
                                     int i2) {
    struct args_t a;
    u64 pt;
    if (!take_args(ctx, &a, &pt))
        return 0;
    char *buf = scratch_buf();
    if (!buf)
        return 0;
    struct hdr_t *h = (struct hdr_t *)buf;
    fill_hdr(h, id, SYS_RET(ctx), pt, &a);
    u32 pos = STR_BASE;
    h->len0 = put_ustr(buf, &pos, PATH_LEN, a.a[i0 & 7]);
    if (nstr > 1)
        h->len1 = put_ustr(buf, &pos, PATH_LEN, a.a[i1 & 7]);
    if (nstr > 2)
        h->len2 = put_ustr(buf, &pos, PATH_LEN, a.a[i2 & 7]);
    return output(buf, pos, cat);
}

#define emit_str1(ctx, id, cat, i0) emit_strs(ctx, id, cat, 1, i0, 0, 0)
#define emit_str2(ctx, id, cat, i0, i1) emit_strs(ctx, id, cat, 2, i0, i1, 0)
#define emit_str3(ctx, id, cat, i0, i1, i2) emit_strs(ctx, id, cat, 3, i0, i1, i2)

// The struct file of fd in the current task's fd table (0 if none), for the socket and open
// helpers below (fd_file of the kernel path walk exists only when all its offsets do).
static __always_inline void *task_fd_file(s64 fd) {
#if defined(OFF_TASK_FILES) && defined(OFF_FILES_FDT) && defined(OFF_FDT_FD) && defined(OFF_FDT_MAX_FDS)
    if (fd < 0)
        return 0;
    void *fdt = kread_ptr(kread_ptr((void *)bpf_get_current_task(), OFF_TASK_FILES), OFF_FILES_FDT);
    if (!fdt || (u64)fd >= kread_u32(fdt, OFF_FDT_MAX_FDS))
        return 0;
    return kread_ptr(kread_ptr(fdt, OFF_FDT_FD), 8 * (long)(fd & 0xffffff));
#else
    return 0;
#endif
}

// The local address of the socket at fd, as Falco's driver reads it for connect's tuple
// (struct sock_common: skc_family, skc_num in host order, skc_rcv_saddr / skc_v6_rcv_saddr):
// w[0] = family | port << 16 | IPv4 address << 32, w[1..2] = the IPv6 address. Zero if unknown.
static __always_inline void sock_local(s64 fd, u64 *w) {
#if defined(OFF_FILE_PRIVATE) && defined(OFF_SOCKET_SK) && defined(OFF_SK_FAMILY) && \
    defined(OFF_SK_NUM) && defined(OFF_SK_RCV_SADDR) && defined(OFF_SK_V6_RCV_SADDR)
    void *file = task_fd_file(fd);
    void *sk = kread_ptr(kread_ptr(file, OFF_FILE_PRIVATE), OFF_SOCKET_SK);
    if (!sk)
        return;
    u16 fam = 0, port = 0;
    bpf_probe_read_kernel(&fam, sizeof(fam), (const char *)sk + OFF_SK_FAMILY);
    bpf_probe_read_kernel(&port, sizeof(port), (const char *)sk + OFF_SK_NUM);
    if (fam == 2) {                                 // AF_INET
        w[0] = 2 | (u64)port << 16 | (u64)kread_u32(sk, OFF_SK_RCV_SADDR) << 32;
    } else if (fam == 10) {                         // AF_INET6
        w[0] = 10 | (u64)port << 16;
        w[1] = kread_u64(sk, OFF_SK_V6_RCV_SADDR);
        w[2] = kread_u64(sk, OFF_SK_V6_RCV_SADDR + 8);
    }
#endif
}

// Sizes PATH_LEN, ARGV_LEN, ENV_LEN and SOCK_LEN must be powers of two (verifier-friendly masks).
// sockaddr modes: 0 = length is the word at len_i; 1 = word at len_i points to an int length
// (accept, recvfrom); 2 = word at ptr_i points to a struct user_msghdr (sendmsg).
// local: the socket's local address (sock_local): 1 = connect's (fd a[0]) into a[3..5];
// 2 = accept's new socket (fd res) into a[1], a[2], a[4] (the user pointers and a free word).
static __always_inline int emit_sock(void *ctx, u32 id, u32 cat, int ptr_i, int len_i, int mode,
                                     int local) {
    struct args_t a;
    u64 pt;
    if (!take_args(ctx, &a, &pt))
        return 0;
    s64 res = SYS_RET(ctx);
    u64 ptr = a.a[ptr_i & 7];
    u32 len = 0;
    if (mode == 0) {
        len = (u32)a.a[len_i & 7];
    } else if (mode == 1) {
        if (a.a[len_i & 7] && bpf_probe_read_user(&len, sizeof(len), (void *)a.a[len_i & 7]) < 0)
            len = 0;
    } else {
        u64 msg = ptr;
        ptr = 0;
        if (msg && bpf_probe_read_user(&ptr, sizeof(ptr), (void *)msg) < 0)
            ptr = 0;
        if (msg && bpf_probe_read_user(&len, sizeof(len), (void *)(msg + 8)) < 0)
            len = 0;
    }
    RESERVE(rec_sock, cat);
    fill_hdr(&r->h, id, res, pt, &a);
    if (len > SOCK_LEN - 1)
        len = SOCK_LEN - 1;
    if (ptr && len >= 2) {
        BOUND(len, SOCK_LEN - 1);
        if (bpf_probe_read_user(r->s0, len, (void *)ptr) < 0) {
            count(C_USER_READ);
            len = 0;
        }
    } else {
        len = 0;
    }
    r->h.len0 = (u16)len;
    if (local == 1) {
        u64 w[3] = {};
        if (res == 0 || res == -115)                // connected, or in progress (EINPROGRESS)
            sock_local((s64)a.a[0], w);
        r->h.a[3] = w[0];
        r->h.a[4] = w[1];
        r->h.a[5] = w[2];
    } else if (local == 2) {
        u64 w[3] = {};
        if (res >= 0)
            sock_local(res, w);
        r->h.a[1] = w[0];
        r->h.a[2] = w[1];
        r->h.a[4] = w[2];
    }
    bpf_ringbuf_submit(r, fl_);
    return 0;
}

// creds and capabilities of the current task (execve, capset, set*id)
static __always_inline void read_creds(u64 *x) {
    void *task = (void *)bpf_get_current_task();
    void *cred = kread_ptr(task, OFF_TASK_CRED);
    x[0] = kread_u32(cred, OFF_CRED_UID);
    x[1] = kread_u32(cred, OFF_CRED_GID);
    x[2] = kread_u32(cred, OFF_CRED_EUID);
    x[3] = kread_u32(cred, OFF_CRED_EGID);
    x[4] = kread_u64(cred, OFF_CRED_CAP_EFF);
    x[5] = kread_u64(cred, OFF_CRED_CAP_PRM);
    x[6] = kread_u64(cred, OFF_CRED_CAP_INH);
}

static __always_inline int emit_creds(void *ctx, u32 id, u32 cat) {
    struct args_t a;
    u64 pt;
    if (!take_args(ctx, &a, &pt))
        return 0;
    RESERVE(rec_base, cat);
    fill_hdr(&r->h, id, SYS_RET(ctx), pt, &a);
    u64 x[7];
    read_creds(x);
    // capset: report the effective/permitted/inheritable sets after the call, as Falco does
    r->h.a[0] = x[4];
    r->h.a[1] = x[5];
    r->h.a[2] = x[6];
    submit(r, sizeof(*r), fl_, id);
    return 0;
}

// host-level and namespace-level number of a struct pid
static __always_inline void pid_numbers(void *pid, u32 *host, u32 *ns) {
    *host = 0;
    *ns = 0;
    if (!pid)
        return;
    u32 level = kread_u32(pid, OFF_PID_LEVEL);
    *host = kread_u32(pid, OFF_PID_NUMBERS);
    *ns = kread_u32(pid, OFF_PID_NUMBERS + (long)(level & 31) * SIZE_UPID);
}

#define OVERLAYFS_SUPER_MAGIC 0x794c7630

static __always_inline int save_exec(void *ctx, u32 id, int nargs, int fname_i) {
    u64 pt = bpf_get_current_pid_tgid();
    if (is_self(pt))
        return 0;
    save_args(ctx, id, nargs);
    u32 zero = 0, tid = (u32)pt;
    struct fname_t *buf = scratch.lookup(&zero);
    if (!buf) {
        count(C_EXEC_FN_FULL);          // the exec is still emitted, without its filename
        return 0;
    }
    if (bpf_probe_read_user_str(buf->s, PATH_LEN, (void *)TP_ARG(ctx, fname_i)) < 0)
        buf->s[0] = 0;
    if (exec_fn.update(&tid, buf) != 0)
        count(C_EXEC_FN_FULL);
    return 0;
}

static __always_inline int emit_exec(void *ctx, u32 id) {
    struct args_t a;
    u64 pt = bpf_get_current_pid_tgid();
    if (is_self(pt))
        return 0;
    // A successful execveat can report its exit under execve's number (measured on 6.18): take
    // whichever exec enter this thread saved, and report it under that enter's type.
    {
        u32 t = (u32)pt;
        struct args_t *ap = args_map.lookup(&t);
        if (!ap || (ap->id != EV_execve && ap->id != EV_execveat)) {
            count(C_NO_ENTER);
            return 0;
        }
        __builtin_memcpy(&a, ap, sizeof(a));
        args_map.delete(&t);
        id = a.id;
    }
    u32 tid = (u32)pt;
    s64 res = SYS_RET(ctx);
    char *buf = scratch_buf();
    if (!buf)
        return 0;
    struct exec_head *r = (struct exec_head *)buf;
    fill_hdr(&r->h, id, res, pt, &a);
    u32 pos = EXEC_BASE;
    struct fname_t *fn = exec_fn.lookup(&tid);
    if (fn) {
        long n = bpf_probe_read_kernel_str(buf + EXEC_BASE, PATH_LEN, fn->s);
        if (n > 0) {
            r->h.len0 = (u16)n;
            pos += (u32)n;
        }
        exec_fn.delete(&tid);
    }
    bpf_get_current_comm(r->comm, sizeof(r->comm));
    {
        u32 tg = (u32)(pt >> 32);
        if (res == 0 && r->comm[0]) {
            struct kf_exec_t e = {};
            e.gen = kf_gen();
            __builtin_memcpy(e.comm, r->comm, sizeof(e.comm));
            kf_exec.update(&tg, &e);
        } else if (res == 0) {
            kf_exec.delete(&tg);                // an empty comm: userspace names it otherwise
        }
    }

    void *task = (void *)bpf_get_current_task();
    u64 *x = r->x;
    __builtin_memset(x, 0, sizeof(r->x));
    read_creds(x);                                       // x[0..6]
#ifdef OFF_TASK_LOGINUID
    x[7] = kread_u32(task, OFF_TASK_LOGINUID);
#else
    x[7] = 0xffffffff;
#endif
    void *signal = kread_ptr(task, OFF_TASK_SIGNAL);
    void *tty = kread_ptr(signal, OFF_SIGNAL_TTY);
    if (tty) {
        u32 index = kread_u32(tty, OFF_TTY_INDEX);
        void *drv = kread_ptr(tty, OFF_TTY_DRIVER);
        u32 major = kread_u32(drv, OFF_TTYDRV_MAJOR);
        u32 minor = kread_u32(drv, OFF_TTYDRV_MINOR_START) + index;
        x[8] = (minor & 0xff) | (major << 8) | ((u64)(minor & ~0xffu) << 12);
    }
    u32 host, ns;
    void *pgrp = kread_ptr(signal, OFF_SIGNAL_PIDS + 8 * 2);     // PIDTYPE_PGID
    pid_numbers(pgrp, &host, &ns);
    x[9] = host;
    x[10] = ns;
    void *sess = kread_ptr(signal, OFF_SIGNAL_PIDS + 8 * 3);     // PIDTYPE_SID
    pid_numbers(sess, &host, &ns);
    // proc.sid as Falco has it: setsid()'s return value, the number the session has in the
    // namespace it was made in (1 for a container's init after runc's setsid; the host's
    // number for a session inherited from the host)
    x[11] = ns;
    void *tpid = kread_ptr(task, OFF_TASK_THREAD_PID);
    pid_numbers(tpid, &host, &ns);
    x[12] = ns;                                          // vtid
    void *leader = kread_ptr(task, OFF_TASK_GROUP_LEADER);
    pid_numbers(kread_ptr(leader, OFF_TASK_THREAD_PID), &host, &ns);
    x[13] = ns;                                          // vpid
    void *parent = kread_ptr(task, OFF_TASK_REAL_PARENT);
    x[14] = kread_u32(parent, OFF_TASK_TGID);            // ppid

    void *mm = kread_ptr(task, OFF_TASK_MM);
    void *exe = kread_ptr(mm, OFF_MM_EXE_FILE);
    if (exe) {
        void *inode = kread_ptr(exe, OFF_FILE_INODE);
        x[15] = kread_u64(inode, OFF_INODE_INO);
        void *dentry = kread_ptr(exe, OFF_FILE_DENTRY);
        void *dname = kread_ptr(dentry, OFF_DENTRY_NAME);
        char pfx[8] = {};
        if (dname)
            bpf_probe_read_kernel(pfx, 6, dname);
        x[16] = (pfx[0] == 'm' && pfx[1] == 'e' && pfx[2] == 'm' && pfx[3] == 'f' &&
                 pfx[4] == 'd' && pfx[5] == ':');
#if defined(OFF_INODE_CTIME_SEC) && defined(OFF_INODE_MTIME_SEC)
        // nsec < 2^30; bit 31 of i_ctime_nsec is the multigrain I_CTIME_QUERIED flag (6.13+)
        x[19] = kread_u64(inode, OFF_INODE_CTIME_SEC) * 1000000000ull +
                (kread_u32(inode, OFF_INODE_CTIME_NSEC) & 0x3fffffff);
        x[20] = kread_u64(inode, OFF_INODE_MTIME_SEC) * 1000000000ull +
                (kread_u32(inode, OFF_INODE_MTIME_NSEC) & 0x3fffffff);
#endif
        x[21] = kread_u32(inode, OFF_INODE_MODE) & 0xffff;
        x[22] = kread_u32(inode, OFF_INODE_UID);
        x[23] = kread_u32(inode, OFF_INODE_GID);
        x[18] |= 2;                                      // inode fields present
        void *sb = kread_ptr(inode, OFF_INODE_SB);
        if (sb && (kread_u64(sb, OFF_SB_MAGIC) & 0xffffffff) == OVERLAYFS_SUPER_MAGIC) {
#if defined(OFF_OVL_UPPERDENTRY) && defined(OFF_OVL_VFS_INODE)
            void *ovl = (char *)inode - OFF_OVL_VFS_INODE;
            x[17] = kread_u64(ovl, OFF_OVL_UPPERDENTRY) != 0;
#endif
            x[18] |= 1;                                  // exe on overlayfs
        }
    }
    u32 n = 0;
    if (res == 0 && mm) {
        u64 start = kread_u64(mm, OFF_MM_ARG_START), end = kread_u64(mm, OFF_MM_ARG_END);
        n = end > start ? (u32)(end - start) : 0;
        if (n > ARGV_LEN - 1)
            n = ARGV_LEN - 1;
        BOUND(n, ARGV_LEN - 1);
        BOUND(pos, POS_MASK);
        if (n && bpf_probe_read_user(buf + pos, n, (void *)start) < 0) {
            count(C_USER_READ);
            n = 0;
        }
        r->h.len1 = (u16)n;
        pos += n;
#if ENV_LEN > 0
        start = kread_u64(mm, OFF_MM_ENV_START);
        end = kread_u64(mm, OFF_MM_ENV_END);
        n = end > start ? (u32)(end - start) : 0;
        if (n > ENV_LEN - 1)
            n = ENV_LEN - 1;
        BOUND(n, ENV_LEN - 1);
        BOUND(pos, POS_MASK);
        if (n && bpf_probe_read_user(buf + pos, n, (void *)start) < 0) {
            count(C_USER_READ);
            n = 0;
        }
        r->h.len2 = (u16)n;
        pos += n;
#endif
    }
#ifdef HAVE_KPATH
    // issue 19: falconet_kpath appends exe_file's path and emits the record (else: below)
    if (res == 0 && exe && kpath_job_set(exe, pos, CAT_EXECVE, KPATH_EXEC))
        kpath_progs.call(ctx, 0);
#endif
    return output(buf, pos, CAT_EXECVE);
}

// prctl: arg2 is a string for PR_SET_NAME (15) only
static __always_inline int emit_prctl(void *ctx, u32 id) {
    struct args_t a;
    u64 pt;
    if (!take_args(ctx, &a, &pt))
        return 0;
    char *buf = scratch_buf();
    if (!buf)
        return 0;
    struct hdr_t *h = (struct hdr_t *)buf;
    fill_hdr(h, id, SYS_RET(ctx), pt, &a);
    u32 pos = STR_BASE;
    if (a.a[0] == 15)
        h->len0 = put_ustr(buf, &pos, 16, a.a[1]);
    return output(buf, pos, CAT_OTHER);
}


// ---------------------------------------------------------------- kernel filter (issue 18)
// Rule-derived filter of the open family, filled by collector/kfilter_maps.py from the plan of
// falconet/rules/kfilter.py. The decision is falconet.kfilter.open_passes, instruction for
// instruction (the replay soundness test runs the Python one on captures): an open that no rule
// can match is not emitted, and when its fd is then unknown to userspace, neither is its close.
// Everything here errs towards emitting: an unset config, a missing map entry or a path the
// kernel can't read all pass.
#define KF_KEY_LEN 256                  // trie key bytes; texts of >= 255 bytes always pass
#define KF_R_FAILED 0
#define KF_R_FLAGS 1
#define KF_R_PATH 2
#define KF_R_UNTRACKED 3
#define KF_R_NOT_SOCKET 4
#define KF_R_CONTENT 5
#define KF_R_PROC 6
#define KF_R_CHILD 7
#define KF_NREASONS 8
#define KF_MAX_IDS 128
struct kf_cfg_t {
    u32 enabled;        // 1: this event type is filtered
    u32 track_fds;      // 1: filtered fds are remembered, and their closes dropped
    u64 live[8];        // clause bits satisfied by class read | write << 1 | ok << 2
    u64 anypath;        // clause bits with no path constraint
    u64 suffix;         // clause bits with suffixes (kf_rpaths is looked up for them)
    u64 relpass;        // clause bits with a relative name or prefix: relative opens pass
    u64 named;          // clause bits with a proc.name term (kf_names)
};
struct kf_key_t {
    u32 prefixlen;      // in bits (LPM trie)
    char data[KF_KEY_LEN];
};
BPF_ARRAY(kf_cfg, struct kf_cfg_t, KF_MAX_IDS);
BPF_LPM_TRIE(kf_paths, struct kf_key_t, u64, 16384);
// suffixes, reversed: the reversed path's longest matching prefix is its longest suffix entry
BPF_LPM_TRIE(kf_rpaths, struct kf_key_t, u64, 1024);
// (tgid << 32 | fd) -> start time of the thread-group leader (a reused tgid never matches)
BPF_TABLE("lru_hash", u64, u64, kf_fds, 65536);
BPF_PERCPU_ARRAY(kf_counts, u64, KF_MAX_IDS * KF_NREASONS);
BPF_PERCPU_ARRAY(kf_keybuf, struct kf_key_t, 1);
// a proc.name of the rules (16 bytes, NUL-padded, as bpf_get_current_comm) -> the bits of the
// clauses that list it
struct kf_comm_t { char c[16]; };
BPF_HASH(kf_names, struct kf_comm_t, u64, 4096);

// The clause bits whose proc.name term the current process meets (falconet.kfilter.
// comm_matches): every bit without a term; with one, those listing the comm kf_exec recorded
// at the process's last execve; all of them when that comm is unknown.
static __always_inline u64 kf_name_ok(struct kf_cfg_t *cfg) {
    u64 named = cfg->named;
    if (!named)
        return ~0ull;
    u32 tg = bpf_get_current_pid_tgid() >> 32;
    struct kf_exec_t *e = kf_exec.lookup(&tg);
    if (!e || e->gen != kf_gen())
        return ~0ull;
    struct kf_comm_t k = {};
    __builtin_memcpy(k.c, e->comm, sizeof(k.c));
    u64 *v = kf_names.lookup(&k);
    return ~named | (v ? *v : 0);
}

static __always_inline void kf_count(u32 id, u32 reason) {
    u32 k = id * KF_NREASONS + reason;
    u64 *c = kf_counts.lookup(&k);
    if (c) *c += 1;
}

// clone/fork/vfork/clone3: a[0] = flags (clone), or the user clone_args pointer (clone3).
static __always_inline int emit_clone(void *ctx, u32 id, int is_clone3) {
    struct args_t a = {};
    u64 pt;
    // (the child's return from clone passes here too: its registers are a copy of the parent's)
    if (!take_args(ctx, &a, &pt))
        return 0;
    s64 res = SYS_RET(ctx);
    if (res == 0) {
        // the child's own return: dropped when no rule or plugin reads this type (kf_cfg
        // enabled; FilterPlan.child_clones): procfork already made the child in the state
        struct kf_cfg_t *cfg = kf_cfg.lookup(&id);
        if (cfg && cfg->enabled) {
            kf_count(id, KF_R_CHILD);
            return 0;
        }
    }
    u64 flags = 0;
    if (is_clone3 == 1) {
        if (a.a[0] && bpf_probe_read_user(&flags, sizeof(flags), (void *)a.a[0]) < 0)
            count(C_USER_READ);
    } else if (is_clone3 == 0) {
        flags = a.a[0];
    }
    RESERVE(rec_base, CAT_CLONE);
    fill_hdr(&r->h, id, res, pt, 0);
    r->h.a[0] = flags;
    submit(r, sizeof(*r), fl_, id);
    return 0;
}


static __always_inline u64 kf_fdkey(u64 pt, s64 fd) {
    return (pt & 0xffffffff00000000ull) | (u32)fd;
}

// The inode of the open file at fd of the current task (0: none, or unknown).
static __always_inline void *kf_fd_inode(s64 fd) {
#if defined(OFF_TASK_FILES) && defined(OFF_FILES_FDT) && defined(OFF_FDT_FD) && defined(OFF_FDT_MAX_FDS)
    if (fd < 0)
        return 0;
    void *task = (void *)bpf_get_current_task();
    void *files = kread_ptr(task, OFF_TASK_FILES);
    void *fdt = kread_ptr(files, OFF_FILES_FDT);
    if (!fdt || (u64)fd >= kread_u32(fdt, OFF_FDT_MAX_FDS))
        return 0;
    void *arr = kread_ptr(fdt, OFF_FDT_FD);
    void *file = kread_ptr(arr, 8 * (long)(fd & 0xffffff));
    return kread_ptr(file, OFF_FILE_INODE);
#else
    return 0;
#endif
}

// The S_IFMT bits of an inode's mode (0: no inode)
static __always_inline u32 kf_inode_fmt(void *inode) {
#if defined(OFF_INODE_MODE)
    return inode ? kread_u32(inode, OFF_INODE_MODE) & 0xf000 : 0;
#else
    return 0;
#endif
}

// What the open file at fd of the current task is: bit 0 = known, bit 1 = a directory, bits
// 16..19 = the S_IFMT bits of its inode (so 0xc0000 = a socket).
static __always_inline u64 inode_ftype(void *inode) {
    if (!inode)
        return 0;
    u32 mode = kf_inode_fmt(inode);
    return 1 | ((mode == 0x4000) ? 2 : 0) | ((u64)mode << 4);
}

static __always_inline u64 fd_ftype(s64 fd) {
    return inode_ftype(kf_fd_inode(fd));
}

// ftype bits 3 and 20 of an open (above the mode's bits 4..19): the new file is on an overlayfs
// upper (FD_UPPER_LAYER) or lower (FD_LOWER_LAYER) layer. As libscap's modern_ebpf decides it
// (extract__dev_ino_overlay_from_fd): an overlayfs superblock, then the ovl_inode around the
// file's inode has an upper dentry (upper) or none (lower); the exe's test in save_exec. Two
// reads more for an open off overlayfs, three on it; opens only (fd_ftype serves I/O too).
#define FTYPE_UPPER (1ull << 3)
#define FTYPE_LOWER (1ull << 20)
static __always_inline u64 open_ftype(s64 fd) {
    void *inode = kf_fd_inode(fd);
    u64 ft = inode_ftype(inode);
#if defined(OFF_INODE_SB) && defined(OFF_SB_MAGIC) && defined(OFF_OVL_UPPERDENTRY) && \
    defined(OFF_OVL_VFS_INODE)
    if (inode) {
        void *sb = kread_ptr(inode, OFF_INODE_SB);
        if (sb && (kread_u64(sb, OFF_SB_MAGIC) & 0xffffffff) == OVERLAYFS_SUPER_MAGIC)
            ft |= kread_u64((char *)inode - OFF_OVL_VFS_INODE, OFF_OVL_UPPERDENTRY) ?
                  FTYPE_UPPER : FTYPE_LOWER;
    }
#endif
    return ft;
}

// falconet.kfilter.irregular_path on the string of n bytes (NUL included) at s
static __always_inline int kf_irregular(const char *s, u32 n) {
    if (n < 2 || n >= KF_KEY_LEN)
        return 1;
    if (s[0] != '/')
        return 1;
    char prev = '/';
    u32 last = n - 1;
#pragma clang loop unroll(disable)
    for (u32 i = 1; i < KF_KEY_LEN - 1; i++) {
        if (i >= last)
            break;
        char c = s[i];
        if (c == '.' && s[i + 1] == '.' && s[i + 2] == '/')
            return 1;                           // "../" anywhere (fd.nameraw contains "../")
        if (prev == '/') {
            if (c == '/')
                return 1;                       // "//"
            if (c == '.') {                     // a "." or ".." component
                char c1 = s[i + 1];
                if (c1 == '/' || c1 == 0)
                    return 1;
                if (c1 == '.') {
                    char c2 = s[i + 2];
                    if (c2 == '/' || c2 == 0)
                        return 1;
                }
            }
        }
        prev = c;
    }
    return last > 1 && prev == '/';
}

// key->data = the len (< KF_KEY_LEN - 1) bytes at s, reversed (for kf_rpaths, the suffixes)
static __always_inline void kf_reverse(struct kf_key_t *key, const char *s, u32 len) {
#pragma clang loop unroll(disable)
    for (u32 i = 0; i < KF_KEY_LEN - 1; i++) {
        if (i >= len)
            break;
        u32 src = len - 1 - i;
        BOUND(src, KF_KEY_LEN - 1);
        key->data[i & (KF_KEY_LEN - 1)] = s[src];
    }
}

// Relative opens (falconet.kfilter.FdTracker's directory verdicts). kf_dirs: (fd table, fd) ->
// the clause bits that may match a path strictly below the directory the fd was opened on:
// looked up in kf_paths with "D/" + NUL when D is opened by an absolute regular path (the
// prefixes of "D/", and the "A/" + NUL entries of the directories with a name or prefix below
// them), inherited by a directory opened by a plain relative name below it. Keyed by the fd
// table (files_struct), so threads and CLONE_FILES processes see one table's closes and opens;
// valid only for the process that set it (leader start time and tgid) under the plan epoch
// (kf_rel[0]; 0 = no verdicts kept). Every miss passes.
struct kf_dkey_t {
    u64 files;
    u64 fd;
};
struct kf_dir_t {
    u64 gen;
    u64 mask;
    u64 inode;          // the directory's inode: a slot that holds anything else has no verdict
    u32 tgid;
    u32 epoch;
};
struct kf_rbuf_t { char s[2 * KF_KEY_LEN]; };
BPF_TABLE("lru_hash", struct kf_dkey_t, struct kf_dir_t, kf_dirs, 16384);
BPF_ARRAY(kf_rel, u32, 1);
BPF_PERCPU_ARRAY(kf_relbuf, struct kf_rbuf_t, 1);

static __always_inline u32 kf_epoch(void) {
#if defined(OFF_TASK_FILES) && defined(OFF_TASK_START_TIME)
    u32 z = 0;
    u32 *e = kf_rel.lookup(&z);
    return e ? *e : 0;
#else
    return 0;
#endif
}

static __always_inline int kf_dkey(struct kf_dkey_t *k, s64 fd) {
#if defined(OFF_TASK_FILES)
    void *task = (void *)bpf_get_current_task();
    k->files = (u64)kread_ptr(task, OFF_TASK_FILES);
    k->fd = (u32)fd;
    return k->files != 0;
#else
    return 0;
#endif
}

// fd now names another file (dup2/dup3 onto it, a new fd, an io_uring close or open): its
// verdict is gone (the inode test alone would keep it for a dup of the same directory)
static __always_inline void kf_dir_forget(s64 fd) {
    if (fd < 0 || !kf_epoch())
        return;
    struct kf_dkey_t k = {};
    if (kf_dkey(&k, fd))
        kf_dirs.delete(&k);
}

// dirfd's clause bits; all bits when it has no valid verdict (everything live passes)
static __always_inline u64 kf_dir_mask(s64 dirfd, u32 epoch) {
    struct kf_dkey_t k = {};
    if (dirfd < 0 || !epoch || !kf_dkey(&k, dirfd))
        return ~0ull;
    struct kf_dir_t *d = kf_dirs.lookup(&k);
    if (!d || d->epoch != epoch || d->tgid != (u32)(bpf_get_current_pid_tgid() >> 32) ||
        d->gen != kf_gen() || !d->inode)
        return ~0ull;
    // closes and other opens of the number leave the entry (no map write on the hot path):
    // the slot must still hold that directory
    void *inode = kf_fd_inode(dirfd);
    if ((u64)inode != d->inode || kf_inode_fmt(inode) != 0x4000)
        return ~0ull;
    return d->mask;
}

// "/" + the relative name (n bytes with its NUL at s) in kf_relbuf: falconet.kfilter.plain_relative
// is kf_irregular of it being 0
static __always_inline char *kf_relq(const char *s) {
    u32 z = 0;
    struct kf_rbuf_t *q = kf_relbuf.lookup(&z);
    if (!q)
        return 0;
    q->s[0] = '/';
    if (bpf_probe_read_kernel(q->s + 1, KF_KEY_LEN, s) < 0)
        return 0;
    return q->s;
}


// kf_irregular of the path as the decision and kf_path_mask read it: "/" + the name for a
// relative one (falconet.kfilter.plain_relative; 1 when it cannot be copied), else the path
static __always_inline int kf_path_irr(const char *path, u32 n) {
    if (n >= 2 && path[0] != '/') {
        char *q = kf_relq(path);
        return !q || kf_irregular(q, n + 1);
    }
    return kf_irregular(path, n);
}

// The verdict of the directory named path (n bytes with its NUL, 0 if unread): an absolute
// regular path other than "/": the kf_paths lookup of "D/" + NUL; a plain relative name: base,
// the verdict of the directory it is relative to; else ~0 (none).
// irr: kf_path_irr(path, n), computed once by the caller (one path scan per program).
static __always_inline u64 kf_path_mask(const char *path, u32 n, u64 base, int irr) {
    if (n < 2 || n >= KF_KEY_LEN || !path)
        return ~0ull;
    if (path[0] != '/') {
        char *q = kf_relq(path);
        return (q && !irr) ? base : ~0ull;
    }
    u32 z = 0;
    struct kf_key_t *key = kf_keybuf.lookup(&z);
    if (n <= 2 || !key || irr ||
        bpf_probe_read_kernel(key->data, KF_KEY_LEN, path) < 0)
        return ~0ull;
    u32 len = n - 1;                    // "D" -> "D/" + NUL
    BOUND(len, KF_KEY_LEN - 1);
    key->data[len] = '/';
    u32 e = len + 1;
    BOUND(e, KF_KEY_LEN - 1);
    key->data[e] = 0;
    key->prefixlen = (len + 2) * 8;
    u64 *v = kf_paths.lookup(key);
    return v ? *v : 0;
}

// The cwd's verdict (kf_cwds: per fs_struct, as kf_dirs per fd; set by chdir/fchdir, valid for
// the process and the exec image that set it: after execve the state takes its cwd from
// /proc/<pid>/cwd, the resolved path, which a lexical verdict need not describe)
struct kf_cwd_t {
    u64 gen;
    u64 mask;
    u64 exec_id;
    u32 tgid;
    u32 epoch;
};
BPF_TABLE("lru_hash", u64, struct kf_cwd_t, kf_cwds, 16384);

static __always_inline u64 kf_fs_key(u64 *exec_id) {
#if defined(OFF_TASK_FS) && defined(OFF_TASK_SELF_EXEC_ID)
    void *task = (void *)bpf_get_current_task();
    *exec_id = kread_u64(task, OFF_TASK_SELF_EXEC_ID);
    return (u64)kread_ptr(task, OFF_TASK_FS);
#else
    return 0;
#endif
}

static __always_inline u64 kf_cwd_mask(u32 epoch) {
    u64 exec_id = 0;
    u64 fs = kf_fs_key(&exec_id);
    if (!fs || !epoch)
        return ~0ull;
    struct kf_cwd_t *c = kf_cwds.lookup(&fs);
    if (!c || c->epoch != epoch || c->tgid != (u32)(bpf_get_current_pid_tgid() >> 32) ||
        c->exec_id != exec_id || c->gen != kf_gen())
        return ~0ull;
    return c->mask;
}

// After chdir (path: its record's string) or fchdir (path 0, the fd): the new cwd's verdict
static __always_inline void kf_cwd_after(s64 res, const char *path, u32 n, s64 fd) {
    u32 epoch = kf_epoch();
    if (res < 0 || !epoch)
        return;
    int irr = path ? kf_path_irr(path, n) : 1;     // first: the scan is simulated for one state
    u64 exec_id = 0;
    u64 fs = kf_fs_key(&exec_id);
    if (!fs)
        return;
    u64 mask = path ? kf_path_mask(path, n, kf_cwd_mask(epoch), irr) : kf_dir_mask(fd, epoch);
    if (mask == ~0ull) {
        kf_cwds.delete(&fs);
        return;
    }
    struct kf_cwd_t c = {};
    c.gen = kf_gen();
    c.mask = mask;
    c.exec_id = exec_id;
    c.tgid = (u32)(bpf_get_current_pid_tgid() >> 32);
    c.epoch = epoch;
    kf_cwds.update(&fs, &c);
}

// chdir: emitted as emit_str1 does, then its verdict from the very bytes emitted (the record
// left in the per-CPU scratch; a record of anything else there, and the cwd has none)
static __always_inline int emit_chdir(void *ctx, u32 id, u32 cat) {
    int r = emit_str1(ctx, id, cat, 0);
    char *buf = scratch_buf();
    if (!buf)
        return r;
    struct hdr_t *h = (struct hdr_t *)buf;
    s64 res = SYS_RET(ctx);
    if (h->id == id && h->tid == (u32)bpf_get_current_pid_tgid() && h->res == res)
        kf_cwd_after(res, buf + STR_BASE, h->len0, 0);
    else
        kf_cwd_after(res, 0, 0, -1);                // no verdict
    return r;
}

// fchdir: the fd's directory verdict becomes the cwd's
static __always_inline int kf_fchdir_after(void *ctx, int unused) {
    struct args_t a;
    u64 pt;
    if (take_args(ctx, &a, &pt))
        kf_cwd_after(SYS_RET(ctx), 0, 0, (s64)(s32)a.a[0]);
    return 0;
}

// A relative open, its clauses live and none without a path: 0 = emit, else 1 + KF_R_PATH
static __always_inline int kf_rel_drop(struct kf_cfg_t *cfg, u64 live, const char *path, u32 n,
                                       int irr,
                                       s64 dirfd) {
    if (live & cfg->relpass)
        return 0;
    u32 epoch = kf_epoch();
    if (!epoch || (live & (dirfd == -100 ? kf_cwd_mask(epoch) : kf_dir_mask(dirfd, epoch))))
        return 0;
    char *q = kf_relq(path);
    if (!q || irr)
        return 0;                       // not plain: the join is not fd.name, or not below
    if (live & cfg->suffix) {
        u32 z = 0;
        struct kf_key_t *key = kf_keybuf.lookup(&z);
        if (!key)
            return 0;
        u32 len = n;                        // "/" + rel, < KF_KEY_LEN - 1 bytes (plain)
        kf_reverse(key, q, len);
        BOUND(len, KF_KEY_LEN - 1);
        key->data[len] = 0;                 // NUL: the "/"-tails of suffixes match exactly
        key->prefixlen = (len + 1) * 8;
        u64 *v = kf_rpaths.lookup(key);
        if (v && (*v & live))
            return 0;
    }
    return 1 + KF_R_PATH;
}

// After a successful open of a directory (or of an unknown file type): the new fd's directory
// verdict (FdTracker._dir_verdict), with the directory's inode; path/n as kf_open_drop's; dirfd
// AT_FDCWD (-100) for open/creat. Nothing is written for other opens, nor on close: a verdict
// counts only while its fd slot holds that directory's inode (kf_dir_mask).
static __always_inline void kf_dir_after(s64 res, u64 ftype, const char *path, u32 n, s64 dirfd,
                                         int irr) {
    if (res < 0 || (ftype & 3) == 1)
        return;                 // not a directory: a verdict left at res fails the inode test
    u32 epoch = kf_epoch();
    if (!epoch)
        return;
    struct kf_dkey_t k = {};
    if (!kf_dkey(&k, res))
        return;
    u64 mask = kf_path_mask(path, n, dirfd == -100 ? kf_cwd_mask(epoch)
                                                        : kf_dir_mask(dirfd, epoch), irr);
    int have = mask != ~0ull;
    void *inode = have ? kf_fd_inode(res) : 0;
    if (inode) {
        struct kf_dir_t d = {};
        d.gen = kf_gen();
        d.mask = mask;
        d.inode = (u64)inode;
        d.tgid = (u32)(bpf_get_current_pid_tgid() >> 32);
        d.epoch = epoch;
        kf_dirs.update(&k, &d);
    } else {
        kf_dirs.delete(&k);
    }
}

// An open's class, the index of kf_cfg_t.live: read | write << 1 | ok << 2 (open_passes step 1).
static __always_inline u32 kf_class(u64 flags, s64 res) {
    u32 acc = flags & 3;
    u32 rd = (acc == 0 || acc == 2) && !(flags & 010000000);
    u32 wr = (acc == 1 || acc == 2) || (flags & 01000);
    return (rd | (wr << 1) | ((res >= 0) << 2)) & 7;
}

// 1 when the regular path (n bytes, NUL included, n < KF_KEY_LEN) is an exact name, or has a
// prefix or suffix, of one of the live clauses (open_passes step 5; step 6 on the kernel's path)
static __always_inline int kf_trie_hit(struct kf_cfg_t *cfg, u64 live, const char *path, u32 n) {
    u32 z = 0;
    struct kf_key_t *key = kf_keybuf.lookup(&z);
    if (!key)
        return 1;
    key->prefixlen = KF_KEY_LEN * 8;
    if (bpf_probe_read_kernel(key->data, KF_KEY_LEN, path) < 0)
        return 1;
    u64 *v = kf_paths.lookup(key);
    if (v && (*v & live))
        return 1;
    if (live & cfg->suffix) {
        u32 len = n - 1;                    // < KF_KEY_LEN - 1 (regular paths)
        kf_reverse(key, path, len);
        key->prefixlen = len * 8;
        v = kf_rpaths.lookup(key);
        if (v && (*v & live))
            return 1;
    }
    return 0;
}

// open_passes steps 1-5: 0 = emit, else 1 + reason. ftype from fd_ftype (successful opens);
// dirfd the base of a relative path (AT_FDCWD, -100: the cwd), decided by kf_rel_drop. A drop
// for the path may still pass on the kernel's path (step 6, falconet_kpath_kf).
static __always_inline int kf_open_drop(u32 id, u64 flags, s64 res, u64 ftype,
                                        const char *path, u32 n, s64 dirfd, int irr) {
    u32 k = id;
    struct kf_cfg_t *cfg = kf_cfg.lookup(&k);
    if (!cfg || !cfg->enabled)
        return 0;
    u32 cls = kf_class(flags, res);
    u32 ok = cls >> 2;
    if (ok && (ftype & 3) != 1)
        return 0;                       // a directory, or the file type is unknown (first, as
                                        // open_passes: its fd may be a dirfd or fchdir target)
    u64 live = cfg->live[cls];
    if (!live)
        return 1 + ((!ok && cfg->live[(cls | 4) & 7]) ? KF_R_FAILED : KF_R_FLAGS);
    live &= kf_name_ok(cfg);            // step 3b
    if (!live)
        return 1 + KF_R_PROC;
    if (live & cfg->anypath)
        return 0;
    if (n >= 2 && path[0] != '/')
        return kf_rel_drop(cfg, live, path, n, irr, dirfd);
    if (irr)
        return 0;
    return kf_trie_hit(cfg, live, path, n) ? 0 : 1 + KF_R_PATH;
}

// An open's kernel filter: 0 = emit, else 1 + reason. A directory (or an unknown file type)
// passes and gets its verdict; anything else is decided. Two exclusive paths, one path scan
// each, so the verifier's work adds up instead of multiplying.
static __always_inline int kf_open(u32 id, u64 flags, s64 res, u64 ftype, const char *path,
                                   u32 n, s64 dirfd, int irr) {
    if (res >= 0 && (ftype & 3) != 1) {
        kf_dir_after(res, ftype, path, n, dirfd, irr);
        return 0;
    }
    return kf_open_drop(id, flags, res, ftype, path, n, dirfd, irr);
}

// After an open's decision: remember (or forget) its fd for the close filter.
static __always_inline int kf_after_open(u32 id, int drop, s64 res, u64 pt) {
    u32 k = id;
    struct kf_cfg_t *cfg = kf_cfg.lookup(&k);
    if (!cfg || !cfg->track_fds || res < 0)
        return drop;
    u64 key = kf_fdkey(pt, res);
    if (drop) {
        u64 gen = kf_gen();
        kf_fds.update(&key, &gen);
    } else {
        kf_fds.delete(&key);
    }
    return drop;
}

// A new fd reached userspace (socket, accept, dup*): any remembered entry for it is stale.
static __always_inline void kf_forget_fd(u32 close_id, u64 pt, s64 fd) {
    if (fd < 0)
        return;
    u32 k = close_id;
    struct kf_cfg_t *cfg = kf_cfg.lookup(&k);
    if (!cfg || !cfg->track_fds)
        return;
    u64 key = kf_fdkey(pt, fd);
    kf_fds.delete(&key);
}

// close: dropped when its fd's open was dropped (the kf_cfg entry of close carries track_fds)
static __always_inline int kf_close_drop(u32 id, u64 pt, s64 fd) {
    u32 k = id;
    struct kf_cfg_t *cfg = kf_cfg.lookup(&k);
    if (!cfg || !cfg->track_fds || fd < 0)
        return 0;
    u64 key = kf_fdkey(pt, fd);
    u64 *gen = kf_fds.lookup(&key);
    if (!gen)
        return 0;
    u64 g = *gen;
    kf_fds.delete(&key);
    if (g != kf_gen())
        return 0;                       // an fd of an earlier process with this tgid
    kf_count(id, KF_R_UNTRACKED);
    return 1;
}

// ftype bit 2 (O_F_CREATED): an O_CREAT open that created its file, from FMODE_CREATED in the
// new file's f_mode, as Falco's driver reports it. Read only for O_CREAT: most opens skip it.
#define FMODE_CREATED 0x100000
static __always_inline u64 open_created(u64 flags, s64 res) {
#ifdef OFF_FILE_F_MODE
    if (!(flags & 0100) || res < 0)
        return 0;
    return (kread_u32(task_fd_file(res), OFF_FILE_F_MODE) & FMODE_CREATED) ? 4 : 0;
#else
    return 0;
#endif
}

// The open's kernel-filter decision (kf_open and what follows it) in one tail program,
// falconet_kf_open, that every open handler calls: the verifier simulates the path scans
// (kf_irregular's, kf_reverse's 254-step loops, for the directory verdict and the relative
// decision) once, not once per handler they would be inlined into (issue 18's start-up cost:
// loading the cached object took ~3.5 s instead of ~0.5 s). The handler leaves its record in
// rec_scratch and what the decision needs in kf_job; kpath: the handler appends the kernel's
// path (emit_open_kpath: file, where as kpath_job_set takes them).
struct kf_job_t {
    u64 flags; s64 res; u64 ftype; u64 pt; s64 dirfd; u64 file;
    u32 id; u32 n; u32 pos; u32 cat; u32 where; u32 kpath;
};
BPF_PERCPU_ARRAY(kf_job, struct kf_job_t, 1);
BPF_PROG_ARRAY(kf_progs, 1);

static __always_inline int kf_open_tail(void *ctx, char *buf, u32 id, u64 flags, s64 res,
                                        u64 ftype, u32 n, s64 dirfd, u64 pt, u32 pos, u32 cat,
                                        void *file, u32 where, u32 kpath) {
    u32 zero = 0;
    struct kf_job_t *j = kf_job.lookup(&zero);
    if (j) {
        j->flags = flags;
        j->res = res;
        j->ftype = ftype;
        j->pt = pt;
        j->dirfd = dirfd;
        j->file = (u64)file;
        j->id = id;
        j->n = n;
        j->pos = pos;
        j->cat = cat;
        j->where = where;
        j->kpath = kpath;
        kf_progs.call(ctx, 0);
    }
    // no job slot, or the tail call failed: the open passes (as a failed path-walk call does)
    kf_after_open(id, 0, res, pt);
#ifdef HAVE_KPATH
    if (kpath && file && kpath_job_set(file, pos, cat, where))
        kpath_progs.call(ctx, 0);
#endif
    return output(buf, pos, cat);
}

int falconet_kf_open(struct bpf_raw_tracepoint_args *ctx) {
    u32 zero = 0;
    struct kf_job_t *j = kf_job.lookup(&zero);
    char *buf = scratch_buf();
    if (!j || !buf) {
        if (buf)
            count(C_LOST_SCRATCH);
        return 0;
    }
    u32 id = j->id;
    u64 flags = j->flags;
    s64 res = j->res;
    u64 pt = j->pt;
    u32 pos = j->pos;
    u32 cat = j->cat & 7;
    u32 n = j->n & 0xffff;
    // the one path scan (kf_irregular) of the decision and the directory verdict: at the
    // program's start, so the verifier simulates it for one state, not for every branch
    // that reaches a use of it
    // (not read when the filter is off for the type and no verdicts are kept: no scan then)
    struct kf_cfg_t *cfg = kf_cfg.lookup(&id);
    int irr = 1;
    if ((cfg && cfg->enabled) || kf_epoch())
        irr = kf_path_irr(buf + STR_BASE, n);
    int drop = kf_open(id, flags, res, j->ftype, buf + STR_BASE, n, j->dirfd, irr);
#ifdef HAVE_KPATH
    void *file = (void *)j->file;
    u16 where = j->where;
    u32 kpath = j->kpath;
    if (kpath && drop == 1 + KF_R_PATH) {
        // the requested path (absolute, or relative under its directory's verdict) passes no
        // clause; the kernel's path may (open_passes step 6, an OR with steps 1-5):
        // falconet_kpath walks it and falconet_kpath_kf decides. No file: it is unknown.
        struct kpath_job_t *k = kpath_job.lookup(&zero);
        if (file && k && kpath_job_set(file, pos, cat, where)) {
            k->kf = 1;
            k->kf_id = id;
            k->kf_flags = flags;
            k->kf_res = res;
            k->kf_pt = pt;
            kpath_progs.call(ctx, 0);
            kf_after_open(id, 0, res, pt);      // the tail call failed: pass, path unknown
            return output(buf, pos, cat);
        }
    }
#endif
    if (kf_after_open(id, drop, res, pt)) {
        kf_count(id, drop - 1);
        return 0;
    }
#ifdef HAVE_KPATH
    if (kpath && file && kpath_job_set(file, pos, cat, where))
        kpath_progs.call(ctx, 0);
#endif
    return output(buf, pos, cat);
}

// open, openat, creat: path at argument path_i; flags at flags_i (-1: creat's implied flags)
static __always_inline int emit_open(void *ctx, u32 id, int path_i, int flags_i) {
    struct args_t a;
    u64 pt;
    if (!take_args(ctx, &a, &pt))
        return 0;
    char *buf = scratch_buf();
    if (!buf)
        return 0;
    s64 res = SYS_RET(ctx);
    struct hdr_t *h = (struct hdr_t *)buf;
    fill_hdr(h, id, res, pt, &a);
    u32 pos = STR_BASE;
    u16 n = put_ustr(buf, &pos, PATH_LEN, a.a[path_i & 7]);
    h->len0 = n;
    u64 flags = flags_i < 0 ? (0100 | 01 | 01000) : a.a[flags_i & 7];
    u64 ftype = res >= 0 ? open_ftype(res) : 0;
    h->a[5] = ftype | open_created(flags, res);
    s64 dirfd = path_i == 1 ? (s64)(s32)a.a[0] : -100;
    return kf_open_tail(ctx, buf, id, flags, res, ftype, n, dirfd, pt, pos, CAT_OPEN, 0, 0, 0);
}


// close: not emitted when the kernel filter dropped its fd's open (kf_close_drop)
static __always_inline int emit_close(void *ctx, u32 id) {
    struct args_t a;
    u64 pt;
    if (!take_args(ctx, &a, &pt))
        return 0;
    if (kf_close_drop(id, pt, (s64)(s32)a.a[0]))
        return 0;
    RESERVE(rec_base, CAT_CLOSE);
    fill_hdr(&r->h, id, SYS_RET(ctx), pt, &a);
    bpf_ringbuf_submit(r, fl_);
    return 0;
}

// After an event that gave userspace a new fd, its result (dup2/dup3 return newfd): a
// remembered filtered fd of that number is gone.
static __always_inline int kf_new_fd(void *ctx, int unused) {
    s64 res = SYS_RET(ctx);
    if (res < 0)
        return 0;
    u64 pt = bpf_get_current_pid_tgid();
    kf_forget_fd(EV_close, pt, res);
    kf_dir_forget(res);
    return 0;
}


// A new fd (fcntl F_DUPFD*, either fd of a pipe or socketpair): the kernel filter's memory of
// that number is gone (kf_new_fd's, for an fd that is not the result).
static __always_inline void kf_fd_reused(u64 pt, s64 fd) {
    if (fd < 0)
        return;
    kf_forget_fd(EV_close, pt, fd);
    kf_dir_forget(fd);
}

#define F_DUPFD 0
#define F_DUPFD_CLOEXEC 1030
// fcntl(fd, cmd, arg): F_DUPFD and F_DUPFD_CLOEXEC give a new fd for fd's file (the fd tables
// must learn it, as for dup: a socket can be put on 0/1/2 that way instead of dup2). all = 0
// (no rule names fcntl): only those two commands are emitted; the others of this frequent call
// change no state and no rule asked for them, so they are not traced (as an unselected syscall).
static __always_inline int emit_fcntl(void *ctx, u32 id, int all) {
    struct args_t a;
    u64 pt;
    if (!take_args(ctx, &a, &pt))
        return 0;
    u32 cmd = (u32)a.a[1];
    int dup = cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC;
    if (!all && !dup)
        return 0;
    s64 res = SYS_RET(ctx);
    if (dup)
        kf_fd_reused(pt, res);
    RESERVE(rec_base, CAT_OTHER);
    fill_hdr(&r->h, id, res, pt, &a);
    bpf_ringbuf_submit(r, fl_);
    return 0;
}

// pipe/pipe2(int fds[2], flags) and socketpair(domain, type, proto, int sv[2]): the two new fds
// from the user array at argument ptr_i, into a[4] and a[5]; for a pipe (ino_i >= 0) the pipe's
// inode number into a[ino_i] (Falco's ino: fd.ino, and the name pipe:[ino]).
static __always_inline int emit_fdpair(void *ctx, u32 id, u32 cat, int ptr_i, int ino_i) {
    struct args_t a;
    u64 pt;
    if (!take_args(ctx, &a, &pt))
        return 0;
    s64 res = SYS_RET(ctx);
    s32 fds[2] = {-1, -1};
    u64 ptr = a.a[ptr_i & 7];
    if (res == 0 && ptr && bpf_probe_read_user(fds, sizeof(fds), (void *)ptr) < 0) {
        count(C_USER_READ);
        fds[0] = fds[1] = -1;
    }
    u64 ino = 0;
#if defined(OFF_INODE_INO)
    if (ino_i >= 0 && res == 0)
        ino = kread_u64(kf_fd_inode(fds[0]), OFF_INODE_INO);
#endif
    if (res == 0) {
        kf_fd_reused(pt, fds[0]);
        kf_fd_reused(pt, fds[1]);
    }
    RESERVE(rec_base, cat);
    fill_hdr(&r->h, id, res, pt, &a);
    r->h.a[4] = (u64)(s64)fds[0];
    r->h.a[5] = (u64)(s64)fds[1];
    if (ino_i >= 0)
        r->h.a[ino_i & 3] = ino;
    bpf_ringbuf_submit(r, fl_);
    return 0;
}

// ---------------------------------------------------------------- I/O buffers (issue 17)
// read/write/pread64/pwrite64/readv/writev/sendto/recvfrom/sendmsg/recvmsg, traced only when a
// rule names them, with a snapshot of the data: SNAPLEN bytes at most (Falco's snaplen, 80 by
// default). Record: header, s0 = the sockaddr (network calls), s1 = the data.
#ifndef SNAPLEN
#define SNAPLEN 80
#endif
#ifndef SNAP_MASK
#define SNAP_MASK 127               // power of two - 1, >= SNAPLEN (set by program.py)
#endif
#define IO_NEEDLES 4
// The I/O filter of an event type: rules that need a socket, and/or data containing one of
// up to four needles (each the first <= 8 bytes of an `evt.buffer contains` literal).
struct kf_io_t {
    u32 enabled;
    u32 sockets_only;
    u32 n;              // needles in use (0 = any data)
    u32 pad;
    u64 lit[IO_NEEDLES];
    u64 mask[IO_NEEDLES];
    u32 len[IO_NEEDLES];
};
BPF_ARRAY(kf_io, struct kf_io_t, KF_MAX_IDS);
// the data snapshot, copied to a fixed place for the needle scan (a constant base lets the
// verifier bound each load without walking every offset)
struct kf_data_t { char b[SNAP_MASK + 1 + 8]; };
BPF_PERCPU_ARRAY(kf_databuf, struct kf_data_t, 1);

static __always_inline u32 copy_user(char *buf, u32 pos, u64 ptr, s64 n) {
    if (!ptr || n <= 0)
        return 0;
    if (n > SNAPLEN)
        n = SNAPLEN;
    u32 len = (u32)n;
    BOUND(len, SNAP_MASK);
    BOUND(pos, POS_MASK);
    if (bpf_probe_read_user(buf + pos, len, (void *)ptr) < 0) {
        count(C_USER_READ);
        return 0;
    }
    return len;
}

// up to min(total, SNAPLEN) bytes gathered from the first four iovecs
static __always_inline u32 copy_iov(char *buf, u32 pos, u64 iov, u64 cnt, s64 total) {
    if (!iov || total <= 0)
        return 0;
    u32 want = total < SNAPLEN ? (u32)total : SNAPLEN;
    u32 got = 0;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        if (i >= cnt || got >= want)
            break;
        u64 v[2];
        if (bpf_probe_read_user(v, sizeof(v), (void *)(iov + 16 * i)) < 0)
            break;
        u64 n = v[1];
        if (n > want - got)
            n = want - got;
        u32 len = (u32)n;
        BOUND(len, SNAP_MASK);
        u32 p = pos + got;
        BOUND(p, POS_MASK);
        if (len && bpf_probe_read_user(buf + p, len, (void *)v[0]) < 0)
            break;
        got += len;
        BOUND(got, SNAP_MASK);
    }
    return got;
}

// a sockaddr of len bytes at ptr, at pos (bounded like emit_sock's)
static __always_inline u32 copy_sockaddr(char *buf, u32 pos, u64 ptr, u32 len) {
    if (!ptr || len < 2)
        return 0;
    if (len > SOCK_LEN - 1)
        len = SOCK_LEN - 1;
    BOUND(len, SOCK_LEN - 1);
    BOUND(pos, POS_MASK);
    if (bpf_probe_read_user(buf + pos, len, (void *)ptr) < 0) {
        count(C_USER_READ);
        return 0;
    }
    return len;
}

// The kernel filter of an I/O event, first part (before any data is copied): 0 = go on, else
// 1 + reason. Most writes of a host go to files, pipes and ttys: they stop here.
static __always_inline int kf_io_early(struct kf_io_t *cfg, u64 ft) {
    if (cfg && cfg->enabled && cfg->sockets_only && (ft & 1) &&
        ((ft >> 4) & 0xf000) != 0xc000)
        return 1 + KF_R_NOT_SOCKET;
    return 0;
}

// ... second part, on the data snapshot: some needle must occur in it.
static __always_inline int kf_io_drop(struct kf_io_t *cfg, const char *data, u32 n) {
    if (!cfg || !cfg->enabled)
        return 0;
    u32 nn = cfg->n;
    if (!nn)
        return 0;
    u32 z = 0;
    struct kf_data_t *d = kf_databuf.lookup(&z);
    if (!d)
        return 0;
    BOUND(n, SNAP_MASK);
    if (n == 0 || bpf_probe_read_kernel(d->b, n, data) < 0)
        return 1 + KF_R_CONTENT;
#pragma clang loop unroll(disable)
    for (u32 i = 0; i < SNAPLEN; i++) {
        if (i >= n)
            break;
        u32 j = i;
        BOUND(j, SNAP_MASK);
        // a direct (unaligned) load: no helper call per position
        u64 w = *(const u64 *)(d->b + j);
#pragma unroll
        for (int q = 0; q < IO_NEEDLES; q++) {
            if (q < nn && i + cfg->len[q] <= n && (w & cfg->mask[q]) == cfg->lit[q])
                return 0;
        }
    }
    return 1 + KF_R_CONTENT;
}

// mode: 0 read, 1 write, 2 readv, 3 writev, 4 sendto, 5 recvfrom, 6 sendmsg, 7 recvmsg
static __always_inline int emit_io(void *ctx, u32 id, int mode) {
    struct args_t a;
    u64 pt;
    if (!take_args(ctx, &a, &pt))
        return 0;
    char *buf = scratch_buf();
    if (!buf)
        return 0;
    s64 res = SYS_RET(ctx);
    u64 ft = fd_ftype((s64)(s32)a.a[0]);
    u32 k = id;
    struct kf_io_t *cfg = kf_io.lookup(&k);
    int drop = kf_io_early(cfg, ft);
    if (drop) {
        kf_count(id, drop - 1);
        return 0;
    }
    struct hdr_t *h = (struct hdr_t *)buf;
    fill_hdr(h, id, res, pt, &a);
    u32 pos = STR_BASE;
    u32 alen = 0, dlen = 0;
    if (mode == 4) {                        // sendto(fd, buf, len, flags, addr, addrlen)
        alen = copy_sockaddr(buf, pos, a.a[4], (u32)a.a[5]);
    } else if (mode == 5) {                 // recvfrom(..., addr, int *addrlen)
        u32 l = 0;
        if (a.a[5] && bpf_probe_read_user(&l, sizeof(l), (void *)a.a[5]) < 0)
            l = 0;
        alen = copy_sockaddr(buf, pos, a.a[4], res >= 0 ? l : 0);
    }
    u64 iov = 0, iovlen = 0;
    if (mode == 6 || mode == 7) {           // struct user_msghdr: name, namelen, iov, iovlen
        u64 m[4] = {};
        if (a.a[1] && bpf_probe_read_user(m, sizeof(m), (void *)a.a[1]) < 0)
            count(C_USER_READ);
        alen = copy_sockaddr(buf, pos, m[0], (mode == 7 && res < 0) ? 0 : (u32)m[1]);
        iov = m[2];
        iovlen = m[3];
    }
    h->len0 = (u16)alen;
    pos += alen;
    if (mode == 0 || mode == 5)
        dlen = copy_user(buf, pos, a.a[1], res);
    else if (mode == 1 || mode == 4)
        dlen = copy_user(buf, pos, a.a[1], res > 0 ? res : (s64)a.a[2]);
    else if (mode == 2 || mode == 3)
        dlen = copy_iov(buf, pos, a.a[1], a.a[2], res);
    else
        dlen = copy_iov(buf, pos, iov, iovlen, res);
    h->len1 = (u16)dlen;
    h->a[5] = ft;                           // hidden arg ftype (all args it held are read)
    u32 p = pos;
    BOUND(p, POS_MASK);
    // needles only for the calls the state does not learn from (derive_io never gives the
    // network calls any): the scan's loop also costs verifier time, kept out of those handlers
    if (mode <= 3)
        drop = kf_io_drop(cfg, buf + p, dlen);
    if (drop) {
        kf_count(id, drop - 1);
        return 0;
    }
    return output(buf, pos + dlen, CAT_OTHER);
}

// openat2(dfd, filename, struct open_how *how, size): how = {u64 flags, mode, resolve}
static __always_inline int emit_openat2(void *ctx, u32 id) {
    struct args_t a;
    u64 pt;
    if (!take_args(ctx, &a, &pt))
        return 0;
    u64 how[3] = {};
    if (a.a[2] && bpf_probe_read_user(how, sizeof(how), (void *)a.a[2]) < 0)
        count(C_USER_READ);
    char *buf = scratch_buf();
    if (!buf)
        return 0;
    struct hdr_t *h = (struct hdr_t *)buf;
    fill_hdr(h, id, SYS_RET(ctx), pt, &a);
    h->a[2] = how[0];
    h->a[3] = how[1];
    h->a[4] = how[2];
    u32 pos = STR_BASE;
    u16 n = put_ustr(buf, &pos, PATH_LEN, a.a[1]);
    h->len0 = n;
    s64 res = SYS_RET(ctx);
    u64 ftype = res >= 0 ? open_ftype(res) : 0;
    h->a[5] = ftype | open_created(how[0], res);
    s64 dirfd = (s64)(s32)a.a[0];
    return kf_open_tail(ctx, buf, id, how[0], res, ftype, n, dirfd, pt, pos, CAT_OPEN, 0, 0, 0);
}

// ------------------------------------------------------------------ kernel paths, the tail (issue 19)
// (after the exit plumbing: it emits with output())
#ifdef HAVE_KPATH
int falconet_kpath(struct bpf_raw_tracepoint_args *ctx) {
    u32 zero = 0;
    struct kpath_job_t *j = kpath_job.lookup(&zero);
    char *buf = (char *)rec_scratch.lookup(&zero);
    if (!j || !buf) {
        count(C_LOST_SCRATCH);
        return 0;
    }
    void *file = (void *)j->file;
    u32 pos = j->pos;
    u64 fp[2];                                      // file->f_path {mnt, dentry}
#if OFF_FILE_DENTRY == OFF_FILE_MNT + 8
    bpf_probe_read_kernel(fp, sizeof(fp), (const char *)file + OFF_FILE_MNT);
#else
    fp[0] = kp_u64((u64)file, OFF_FILE_MNT);
    fp[1] = kp_u64((u64)file, OFF_FILE_DENTRY);
#endif
    u32 start = pos;
    u16 n = put_kpath(buf, &pos, (void *)fp[0], (void *)fp[1]);
    if (j->where == KPATH_EXEC)
        ((struct exec_head *)buf)->x[18] |= (u64)n << 16;
    else if (j->where == KPATH_LEN0)
        ((struct hdr_t *)buf)->len0 = n;
    else
        ((struct hdr_t *)buf)->len1 = n;
    if (j->kf) {
        if (!n) {                       // the kernel's path is unknown: the requested one decides
            kf_after_open(j->kf_id, 1 + KF_R_PATH, j->kf_res, j->kf_pt);
            kf_count(j->kf_id, KF_R_PATH);
            return 0;
        }
        j->kf_start = start;
        j->kf_n = n;
        j->pos = pos;
        kpath_progs.call(ctx, 1);       // falconet_kpath_kf; if the call fails, the open passes
        kf_after_open(j->kf_id, 0, j->kf_res, j->kf_pt);
    }
    return output(buf, pos, j->cat & 7);
}

// The kernel filter's step 6 (falconet.kfilter.open_passes): an open whose requested path
// passes no live clause passes when the kernel's path (just appended at kf_start) does; the
// rules see that path too (falconet.rules.views). Its own program: with the walk, one
// program would exceed what the verifier explores.
struct kf_path_t { char d[KF_KEY_LEN + 8]; };   // + kf_irregular's look-ahead
BPF_PERCPU_ARRAY(kf_pathbuf, struct kf_path_t, 1);

int falconet_kpath_kf(struct bpf_raw_tracepoint_args *ctx) {
    u32 zero = 0;
    struct kpath_job_t *j = kpath_job.lookup(&zero);
    char *buf = (char *)rec_scratch.lookup(&zero);
    struct kf_path_t *pb = kf_pathbuf.lookup(&zero);
    if (!j || !buf || !pb) {
        count(C_LOST_SCRATCH);
        return 0;
    }
    u32 id = j->kf_id;
    struct kf_cfg_t *cfg = kf_cfg.lookup(&id);
    u32 n = j->kf_n;
    int hit = 1;                        // unknown, or too long for the tries: pass
    if (cfg && n >= 2 && n < KF_KEY_LEN) {
        bpf_probe_read_kernel(pb->d, KF_KEY_LEN, buf + (j->kf_start & POS_MASK));
        pb->d[KF_KEY_LEN - 1] = 0;
        // falconet.kfilter.kernel_path_irregular: the walk's path is absolute, without "//",
        // "." or ".." components; "../" (a name ending in "..") is its one irregularity. A
        // loop to the NUL with a constant bound (kf_irregular's, bounded by n, is more than
        // the verifier follows here).
        hit = 0;
#pragma clang loop unroll(disable)
        for (u32 i = 0; i < KF_KEY_LEN - 2; i++) {
            char c = pb->d[i];
            if (!c)
                break;
            if (c == '.' && pb->d[i + 1] == '.' && pb->d[i + 2] == '/') {
                hit = 1;
                break;
            }
        }
        if (!hit)
            hit = kf_trie_hit(cfg, cfg->live[kf_class(j->kf_flags, j->kf_res)] &
                              kf_name_ok(cfg), pb->d, n);
    }
    if (kf_after_open(id, hit ? 0 : 1 + KF_R_PATH, j->kf_res, j->kf_pt)) {
        kf_count(id, KF_R_PATH);
        return 0;
    }
    return output(buf, j->pos, j->cat & 7);
}
#endif

// ------------------------------------------------------------------ resolved opens (issue 19)
// open/openat/openat2/creat when collector.resolve_paths is on, and open_by_handle_at: the
// syscall's record (the path as passed in s0) plus the path the kernel opened, from the new fd's
// struct file, appended by falconet_kpath (s1; s0 for open_by_handle_at, which has no path
// argument). kind: 0 = path at name_i, flags/mode in the argument words; 1 = openat2 (struct
// open_how at argument 2); 2 = open_by_handle_at (no path argument).
// (the kernel filter decides first: a dropped open costs no path walk; flags_i as emit_open)
static __always_inline int emit_open_kpath(void *ctx, u32 id, u32 cat, int name_i, int kind,
                                           int flags_i) {
    struct args_t a;
    u64 pt;
    if (!take_args(ctx, &a, &pt))
        return 0;
    char *buf = scratch_buf();
    if (!buf)
        return 0;
    struct hdr_t *h = (struct hdr_t *)buf;
    s64 res = SYS_RET(ctx);
    fill_hdr(h, id, res, pt, &a);
    if (kind == 1) {
        u64 how[3] = {};
        if (a.a[2] && bpf_probe_read_user(how, sizeof(how), (void *)a.a[2]) < 0)
            count(C_USER_READ);
        h->a[2] = how[0];
        h->a[3] = how[1];
        h->a[4] = how[2];
    }
    u32 pos = STR_BASE;
    u16 n = 0;
    if (kind != 2) {
        n = put_ustr(buf, &pos, PATH_LEN, a.a[name_i & 7]);
        h->len0 = n;
    }
    u64 flags = kind == 1 ? h->a[2] : (flags_i < 0 ? (0100 | 01 | 01000) : a.a[flags_i & 7]);
    u64 ftype = res >= 0 ? open_ftype(res) : 0;
    h->a[5] = ftype | open_created(flags, res);
    s64 dirfd = name_i == 1 ? (s64)(s32)a.a[0] : -100;
    void *file = 0;
    u32 where = 0;
#ifdef HAVE_KPATH
    file = fd_file(res);
    where = kind == 2 ? KPATH_LEN0 : KPATH_LEN1;
#endif
    return kf_open_tail(ctx, buf, id, flags, res, kind == 2 ? 0 : ftype, n, dirfd, pt, pos, cat,
                        file, where, 1);
}

// ------------------------------------------------------------------ io_uring (issue 19)
// File and socket operations submitted through io_uring never pass sys_exit. Two classic
// tracepoints see them: io_uring_submit_req (after the opcode's prep: the request's command
// area holds the parsed sqe, e.g. struct io_open with the getname()'d path) and io_uring_complete
// (the result). The submit program copies what the event needs (the path is freed before the
// completion) into iou_pend keyed by the request pointer; the complete program joins it with the
// result and emits one record with the layout of the matching syscall's record, under an
// EV_iou_* id (collector/program.py IOU_EVENTS), so the decoder reuses the syscall's decoding and
// marks the event as coming from io_uring. Struct offsets come from BTF (OFF_IOK_*, OFF_IOU_*);
// the tracepoint field offsets from the tracepoints' format files (IOU_TP_*).
#ifdef WANT_IOURING
#ifndef IOU_TP_SUBMIT_REQ
#define IOU_TP_SUBMIT_REQ 16
#define IOU_TP_SUBMIT_OPCODE 32
#define IOU_TP_SUBMIT_FLAGS 40
#define IOU_TP_COMPLETE_REQ 16
#define IOU_TP_COMPLETE_RES 32
#endif
#define IOU_OP_ACCEPT 13
#define IOU_OP_CONNECT 16
#define IOU_OP_OPENAT 18
#define IOU_OP_CLOSE 19
#define IOU_OP_OPENAT2 28
#define IOU_OP_RENAMEAT 35
#define IOU_OP_LINKAT 39
#define IOU_OP_SOCKET 45
#define IOU_OP_FIXED_FD_INSTALL 54
#define IOU_REQ_F_FIXED_FILE 1
#define IOU_SLOT_ALLOC 0xffffffffu      // IORING_FILE_INDEX_ALLOC: the kernel picks the slot
#define IOU_STR_LEN (2 * PATH_LEN)

struct iou_pend_t {
    u64 cgroup_id;
    u64 ring;             // struct io_ring_ctx *: fixed slots belong to a ring
    u64 w[6];             // the syscall record's argument words
    u64 uaddr, ulen;      // accept: user sockaddr and length pointers, read at completion
    u32 tid, pid;
    u32 slot;             // 0: plain fd; n: fixed slot n - 1; IOU_SLOT_ALLOC: slot = result
    u16 ev, cat, len0, len1;
    char s[IOU_STR_LEN];  // strings packed (s0 then s1) or the raw sockaddr
};

BPF_TABLE("lru_hash", u64, struct iou_pend_t, iou_pend, 4096);
BPF_PERCPU_ARRAY(iou_scratch, struct iou_pend_t, 1);

// a struct filename * (kernel) -> its name into p->s at *pos
static __always_inline u16 iou_fname(struct iou_pend_t *p, u32 *pos, void *fname) {
    void *name = kread_ptr(fname, OFF_FILENAME_NAME);
    u32 q = *pos;
    BOUND(q, PATH_LEN - 1);
    long n = name ? bpf_probe_read_kernel_str(p->s + q, PATH_LEN, name) : 0;
    if (n < 0) {
        count(C_KERNEL_READ);
        n = 0;
    }
    *pos = q + (u32)n;
    return (u16)n;
}

// Only the opcodes whose event type is traced (IOU_WANT_<op>, set by program.py from the
// selection): an io_uring operation never produces an event type the rules did not ask for.
static __always_inline int iou_wanted(u8 op) {
#ifdef IOU_WANT_OPENAT
    if (op == IOU_OP_OPENAT) return 1;
#endif
#ifdef IOU_WANT_OPENAT2
    if (op == IOU_OP_OPENAT2) return 1;
#endif
#ifdef IOU_WANT_SOCKET
    if (op == IOU_OP_SOCKET) return 1;
#endif
#ifdef IOU_WANT_CONNECT
    if (op == IOU_OP_CONNECT) return 1;
#endif
#ifdef IOU_WANT_ACCEPT
    if (op == IOU_OP_ACCEPT) return 1;
#endif
#ifdef IOU_WANT_CLOSE
    if (op == IOU_OP_CLOSE) return 1;
#endif
#ifdef IOU_WANT_FIXED_FD_INSTALL
    if (op == IOU_OP_FIXED_FD_INSTALL) return 1;
#endif
#ifdef IOU_WANT_RENAMEAT
    if (op == IOU_OP_RENAMEAT) return 1;
#endif
#ifdef IOU_WANT_LINKAT
    if (op == IOU_OP_LINKAT) return 1;
#endif
    return 0;
}

int falconet_iou_submit(void *ctx) {
    u64 pt = bpf_get_current_pid_tgid();
    if (is_self(pt))
        return 0;
    u8 op = *(u8 *)((char *)ctx + IOU_TP_SUBMIT_OPCODE);
    if (!iou_wanted(op))
        return 0;
    u64 req = *(u64 *)((char *)ctx + IOU_TP_SUBMIT_REQ);
    u64 rflags = *(u64 *)((char *)ctx + IOU_TP_SUBMIT_FLAGS);
    u32 zero = 0;
    struct iou_pend_t *p = iou_scratch.lookup(&zero);
    if (!p || !req) {
        count(C_LOST_IOU);
        return 0;
    }
    __builtin_memset(p->w, 0, sizeof(p->w));
    p->cgroup_id = bpf_get_current_cgroup_id();
    p->ring = kread_u64((void *)req, OFF_IOK_CTX);
    p->tid = (u32)pt;
    p->pid = (u32)(pt >> 32);
    p->uaddr = 0;
    p->ulen = 0;
    p->slot = 0;
    p->len0 = 0;
    p->len1 = 0;
    void *cmd = (void *)req;                      // the command area is the request's first bytes
    s32 sqe_fd = (s32)kread_u32(cmd, OFF_IOK_CQE_FD);   // sqe->fd, kept in req->cqe.fd
    u32 fixed = (rflags & IOU_REQ_F_FIXED_FILE) ? 1 : 0;
    u32 pos = 0;
    if (op == IOU_OP_OPENAT || op == IOU_OP_OPENAT2) {
        p->ev = op == IOU_OP_OPENAT ? EV_iou_openat : EV_iou_openat2;
        p->cat = CAT_OPEN;
        p->w[0] = (s64)(s32)kread_u32(cmd, OFF_IOU_OPEN_DFD);
        p->w[2] = kread_u64(cmd, OFF_IOU_OPEN_HOW);          // how.flags
        p->w[3] = kread_u64(cmd, OFF_IOU_OPEN_HOW + 8);      // how.mode
        p->w[4] = kread_u64(cmd, OFF_IOU_OPEN_HOW + 16);     // how.resolve
        p->slot = kread_u32(cmd, OFF_IOU_OPEN_SLOT);
        p->len0 = iou_fname(p, &pos, kread_ptr(cmd, OFF_IOU_OPEN_FILENAME));
    } else if (op == IOU_OP_SOCKET) {
        p->ev = EV_iou_socket;
        p->cat = CAT_OTHER;
        p->w[0] = kread_u32(cmd, OFF_IOU_SOCKET_DOMAIN);
        p->w[1] = kread_u32(cmd, OFF_IOU_SOCKET_TYPE);
        p->w[2] = kread_u32(cmd, OFF_IOU_SOCKET_PROTOCOL);
        p->slot = kread_u32(cmd, OFF_IOU_SOCKET_SLOT);
    } else if (op == IOU_OP_CONNECT) {
        p->ev = EV_iou_connect;
        p->cat = CAT_CONNECT;
        p->w[0] = (s64)sqe_fd;
        if (fixed)
            p->slot = (u32)sqe_fd + 1;
        u64 addr = kread_u64(cmd, OFF_IOU_CONNECT_ADDR);
        u32 len = kread_u32(cmd, OFF_IOU_CONNECT_ADDR_LEN);
        if (len > SOCK_LEN - 1)
            len = SOCK_LEN - 1;
        BOUND(len, SOCK_LEN - 1);
        if (addr && len >= 2 && bpf_probe_read_user(p->s, len, (void *)addr) == 0)
            p->len0 = (u16)len;
    } else if (op == IOU_OP_ACCEPT) {
        p->ev = EV_iou_accept4;
        p->cat = CAT_OTHER;
        p->w[0] = (s64)sqe_fd;                    // the listening socket
        p->w[3] = kread_u32(cmd, OFF_IOU_ACCEPT_FLAGS);
        p->uaddr = kread_u64(cmd, OFF_IOU_ACCEPT_ADDR);
        p->ulen = kread_u64(cmd, OFF_IOU_ACCEPT_ADDR_LEN);
        p->slot = kread_u32(cmd, OFF_IOU_ACCEPT_SLOT);
        p->w[4] = fixed;                          // the listener itself is a fixed slot
    } else if (op == IOU_OP_CLOSE) {
        p->ev = EV_iou_close;
        p->cat = CAT_CLOSE;
        p->w[0] = (s64)(s32)kread_u32(cmd, OFF_IOU_CLOSE_FD);
        p->slot = kread_u32(cmd, OFF_IOU_CLOSE_SLOT);
    } else if (op == IOU_OP_FIXED_FD_INSTALL) {
        p->ev = EV_iou_fixed_fd_install;
        p->cat = CAT_OTHER;
        p->w[0] = (u64)-1;                        // oldfd: none (the source is the slot)
        p->w[1] = (u64)-1;
        p->w[2] = kread_u32(cmd, OFF_IOU_INSTALL_FLAGS);
        p->slot = (u32)sqe_fd + 1;
    } else {                                      // RENAMEAT, LINKAT (same layout)
        p->ev = op == IOU_OP_RENAMEAT ? EV_iou_renameat2 : EV_iou_linkat;
        p->cat = CAT_DIR_FILE;
        p->w[0] = (s64)(s32)kread_u32(cmd, OFF_IOU_RENAME_OLD_DFD);
        p->w[2] = (s64)(s32)kread_u32(cmd, OFF_IOU_RENAME_NEW_DFD);
        p->w[4] = kread_u32(cmd, OFF_IOU_RENAME_FLAGS);
        p->len0 = iou_fname(p, &pos, kread_ptr(cmd, OFF_IOU_RENAME_OLDPATH));
        p->len1 = iou_fname(p, &pos, kread_ptr(cmd, OFF_IOU_RENAME_NEWPATH));
    }
    if (iou_pend.update(&req, p) != 0)
        count(C_LOST_IOU);              // its completion finds no entry: the operation is lost
    return 0;
}

int falconet_iou_complete(void *ctx) {
    u64 req = *(u64 *)((char *)ctx + IOU_TP_COMPLETE_REQ);
    struct iou_pend_t *p = iou_pend.lookup(&req);
    if (!p)
        return 0;
    s64 res = *(s32 *)((char *)ctx + IOU_TP_COMPLETE_RES);
    char *buf = scratch_buf();          // (a failure is counted there: C_LOST_SCRATCH)
    if (!buf) {
        iou_pend.delete(&req);
        return 0;
    }
    struct hdr_t *h = (struct hdr_t *)buf;
    h->ts = bpf_ktime_get_ns();
    h->cgroup_id = p->cgroup_id;
    h->res = res;
    h->tid = p->tid;
    h->pid = p->pid;
    h->id = p->ev;
    h->len0 = 0;
    h->len1 = 0;
    h->len2 = 0;
    h->cpu = bpf_get_smp_processor_id();     // the CPU of the completion, as a syscall's exit
    h->pad = 0;
    __builtin_memcpy(h->a, p->w, sizeof(h->a));
    u32 slot = p->slot;
    if (slot == IOU_SLOT_ALLOC)
        slot = res >= 0 ? (u32)res + 1 : 0;
    // a[5]: low 32 bits = fixed slot + 1 (0: a plain fd), high 32 bits = the ring (its low bits)
    h->a[5] = ((p->ring & 0xffffffffull) << 32) | slot;
    u32 pos = STR_BASE;
    u32 n0 = p->len0, n1 = p->len1;
    if (p->ev == EV_iou_accept4) {
        u32 len = 0;
        if (res >= 0 && p->ulen && bpf_probe_read_user(&len, sizeof(len), (void *)p->ulen) < 0)
            len = 0;
        if (len > SOCK_LEN - 1)
            len = SOCK_LEN - 1;
        BOUND(len, SOCK_LEN - 1);
        if (p->uaddr && len >= 2 && bpf_probe_read_user(buf + STR_BASE, len, (void *)p->uaddr) == 0)
            h->len0 = (u16)len;
        pos += h->len0;
    } else {
        BOUND(n0, PATH_LEN - 1);
        if (n0 && bpf_probe_read_kernel(buf + STR_BASE, n0, p->s) == 0) {
            h->len0 = (u16)n0;
            pos += n0;
        }
        BOUND(n1, PATH_LEN - 1);
        u32 q = h->len0;
        BOUND(q, PATH_LEN - 1);
        if (n1 && bpf_probe_read_kernel(buf + STR_BASE + q, n1, p->s + q) == 0) {
            h->len1 = (u16)n1;
            pos += n1;
        }
    }
    u32 cat = p->cat;
    // the kernel filter's directory verdicts (FdTracker: io_uring closes and new plain fds)
    if (p->ev == EV_iou_close && !p->slot)
        kf_dir_forget((s64)(s32)p->w[0]);
    else if (p->ev == EV_iou_fixed_fd_install ||
             ((p->ev == EV_iou_openat || p->ev == EV_iou_openat2 || p->ev == EV_iou_socket ||
               p->ev == EV_iou_accept4) && !slot))
        kf_dir_forget(res);
    iou_pend.delete(&req);
    return output(buf, pos, cat & 7);
}
#endif  // WANT_IOURING

// ---------------------------------------------------------------- process events
#ifdef WANT_PROCFORK
RAW_TRACEPOINT_PROBE(sched_process_fork) {
    u64 pt = bpf_get_current_pid_tgid();
    if (is_self(pt))
        return 0;
    void *child = (void *)ctx->args[1];
    u32 cpid = kread_u32(child, OFF_TASK_PID), ctgid = kread_u32(child, OFF_TASK_TGID);
#if NR_WORKERS > 1 && PARTITION_KEY == 0
    // lineage: a new process (not a thread) stays on its parent's worker (see worker_of),
    // whether or not its fork record finds room
    if (ctgid && ctgid == cpid) {
        u32 w = owner_of((u32)(pt >> 32), 0);
        if (w != WORKER_SKIP && worker_of.update(&ctgid, &w) != 0)
            count(C_WORKER_FULL);
    }
#endif
    RESERVE(rec_comm, CAT_CLONE);
    fill_hdr(&r->h, EV_procfork, 0, pt, 0);
    r->h.a[0] = cpid;
    r->h.a[1] = ctgid;
    r->h.a[2] = (u32)pt;
    r->h.a[3] = (u32)(pt >> 32);
    r->s0[0] = 0;
#ifdef OFF_TASK_COMM
    if (child && bpf_probe_read_kernel_str(r->s0, 16, (char *)child + OFF_TASK_COMM) > 0)
        r->h.len0 = 16;
#endif
    submit(r, sizeof(*r), fl_, EV_procfork);
    return 0;
}
#endif

#ifdef WANT_PROCEXIT
int falconet_procexit(void *ctx) {
    u64 pt = bpf_get_current_pid_tgid();
    u32 tid = (u32)pt;
    args_map.delete(&tid);          // a thread killed inside a syscall leaves its enter behind
    exec_fn.delete(&tid);
    if (is_self(pt))
        return 0;
    u64 fl_;
    struct rec_base *r = reserve(sizeof(struct rec_base), CAT_PROC, &fl_);
    if (r) {
        fill_hdr(&r->h, EV_procexit, 0, pt, 0);
        void *task = (void *)bpf_get_current_task();
        r->h.a[0] = kread_u32(task, OFF_TASK_EXIT_CODE);
        submit(r, sizeof(*r), fl_, EV_procexit);
    }
#if NR_WORKERS > 1
    u32 tgid = (u32)(pt >> 32);
    if (tid == tgid)
        worker_of.delete(&tgid);     // after its exit record: that one still goes to the owner
#endif
    return 0;
}
#endif

// ---------------------------------------------------------------- syscall dispatch
// One raw tracepoint (raw_syscalls sys_exit) tail-calls the handler of the syscall from a
// BPF_PROG_ARRAY indexed by syscall number. One attachment instead of one pair per syscall:
// detaching ~110 syscall tracepoints takes ~8 s (an RCU grace period each).
#define MAX_SYSCALL_NR 512
#define TS_COMPAT 0x0002
BPF_PROG_ARRAY(exit_progs, MAX_SYSCALL_NR);

// Not RAW_TRACEPOINT_PROBE: bcc would attach it as soon as the program is compiled, and the
// loader would then see its own BPF_PROG_LOAD calls (false "BPF program loaded" alerts). The
// loader attaches it by name after every other program is loaded (collector/bpfproc.py).
int falconet_sys_exit(struct bpf_raw_tracepoint_args *ctx) {
    // Every syscall of the host passes here: keep it to one helper, one read and the tail call
    // (an empty slot of the prog array just falls through, so no "wanted" lookup is needed).
    if (is_self(bpf_get_current_pid_tgid()))
        return 0;
    s64 nr = -1;
    bpf_probe_read_kernel(&nr, sizeof(nr), SYS_REGS(ctx) + REGS_ORIG_AX);
    if (nr < 0 || nr >= MAX_SYSCALL_NR)
        return 0;
    exit_progs.call(ctx, (u32)nr);
    return 0;
}

// ---------------------------------------------------------------- generated handlers follow
