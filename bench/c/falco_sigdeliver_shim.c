/* LD_PRELOAD shim for upstream Falco 0.44.1 (libs 0.25.4) on kernels whose verifier rejects its
 * modern probe's `signal_deliver` program (seen on 6.18: "marking pointer arg1 as scalar as it
 * may encode error", then "R9 invalid mem access 'scalar'"; the tracepoint's siginfo argument
 * can be SEND_SIG_PRIV, so newer kernels no longer let the program dereference it). Without it
 * Falco stops with "Initialization issues during scap_init".
 *
 * libbpf loads programs through glibc's syscall(); this wrapper replaces the instructions of the
 * one program named "signal_deliver" with "return 0" and passes every other call through. The
 * cost: Falco sees no signal-delivery events (no stable rule uses them, and the benchmark's
 * workloads deliver no handled signals). bench/bench_vs_falco.py uses it only when Falco fails
 * to start for exactly this reason, and says so in its JSON ("falco_shim"). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <linux/bpf.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/syscall.h>

static const struct bpf_insn return_zero[2] = {
    {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 0, .imm = 0},
    {.code = BPF_JMP | BPF_EXIT},
};

long syscall(long nr, ...) {
    static long (*real)(long, ...);
    long a[6];
    va_list ap;
    va_start(ap, nr);
    for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);
    va_end(ap);
    if (!real) real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
    if (nr == __NR_bpf && a[0] == BPF_PROG_LOAD && a[1] &&
        (unsigned long)a[2] >= offsetof(union bpf_attr, prog_name) + sizeof(((union bpf_attr *)0)->prog_name)) {
        union bpf_attr *attr = (union bpf_attr *)a[1];
        if (strncmp(attr->prog_name, "signal_deliver", sizeof(attr->prog_name)) == 0) {
            attr->insns = (unsigned long)return_zero;
            attr->insn_cnt = 2;
            attr->func_info = 0; attr->func_info_cnt = 0; attr->func_info_rec_size = 0;
            attr->line_info = 0; attr->line_info_cnt = 0; attr->line_info_rec_size = 0;
        }
    }
    return real(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}
