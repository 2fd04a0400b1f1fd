/* Load generator of bench/bench_vs_falco.py, compiled with gcc at bench time.
 *
 *   loadgen pace RATE SECONDS PATH   open+close PATH (O_RDONLY) RATE pairs/s for SECONDS
 *   loadgen loop N PATH              open+close PATH N times, as fast as it goes
 *   loadgen forkexec N PROG          fork, exec PROG, wait; N times
 *   loadgen steps PATH               for each line "RATE SECONDS" on stdin, pace (one process
 *                                    for every step: bench_workers_live.py's roots)
 *
 * Prints one line "pairs=<done> seconds=<elapsed> missed=<pairs not issued>" (loop and forkexec:
 * missed=0). Pacing: every 1 ms tick the generator issues the pairs due since the start; when it
 * falls more than 20 ms behind (descheduled, or the machine is too slow) it skips the excess and
 * counts it as missed, so a step is a steady rate, not a burst that makes up for lost time. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int pair(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    close(fd);
    return 0;
}

static int pace(double rate, double seconds, const char *path) {
    const double tick = 0.001;
    long burst = (long)(rate * 0.020) + 1;
    long done = 0, missed = 0;
    struct timespec next;
    double t0 = now_s(), elapsed;
    clock_gettime(CLOCK_MONOTONIC, &next);
    while ((elapsed = now_s() - t0) < seconds) {
        long goal = (long)(elapsed * rate) - missed;
        if (goal - done > burst) {
            missed += goal - done - burst;
            goal = done + burst;
        }
        while (done < goal) {
            if (pair(path) < 0) { perror(path); return 1; }
            done++;
        }
        next.tv_nsec += (long)(tick * 1e9);
        if (next.tv_nsec >= 1000000000L) { next.tv_sec++; next.tv_nsec -= 1000000000L; }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
    printf("pairs=%ld seconds=%.6f missed=%ld\n", done, now_s() - t0, missed);
    return 0;
}

static int loop(long n, const char *path) {
    double t0 = now_s();
    for (long i = 0; i < n; i++)
        if (pair(path) < 0) { perror(path); return 1; }
    printf("pairs=%ld seconds=%.6f missed=0\n", n, now_s() - t0);
    return 0;
}

static int forkexec(long n, const char *prog) {
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) { perror("fork"); return 1; }
        if (pid == 0) {
            execl(prog, prog, (char *)NULL);
            _exit(127);
        }
        int st;
        if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "%s failed\n", prog);
            return 1;
        }
    }
    printf("pairs=%ld seconds=%.6f missed=0\n", n, now_s() - t0);
    return 0;
}

static int steps(const char *path) {
    double rate, seconds;
    while (scanf("%lf %lf", &rate, &seconds) == 2) {
        if (pace(rate, seconds, path) != 0) return 1;
        fflush(stdout);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "pace") == 0)
        return pace(atof(argv[2]), atof(argv[3]), argv[4]);
    if (argc == 4 && strcmp(argv[1], "loop") == 0)
        return loop(atol(argv[2]), argv[3]);
    if (argc == 4 && strcmp(argv[1], "forkexec") == 0)
        return forkexec(atol(argv[2]), argv[3]);
    if (argc == 3 && strcmp(argv[1], "steps") == 0)
        return steps(argv[2]);
    fprintf(stderr, "usage: loadgen pace RATE SECONDS PATH | loop N PATH | forkexec N PROG"
            " | steps PATH\n");
    return 2;
}
