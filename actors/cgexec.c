/*
 * ziggie-cgexec: join a cgroup, then exec the agent (issue 15).
 *
 *     ziggie-cgexec CGROUP_PROCS PROGRAM ARGV0 [ARG...]
 *
 * Writes its own pid to CGROUP_PROCS, then execv(PROGRAM, [ARGV0, ARG...]). The agent
 * therefore starts inside its cgroup, and every process it forks does too. CPython can
 * only do this in the child through preexec_fn, which costs its vfork fast path (spawns
 * measured 12x slower). The shell shim (`echo $$ > "$0" && exec "$@"`) keeps vfork but
 * adds a dynamically linked exec: 1.5-1.6x a bare Popen loop, measured. Linked statically
 * without libc, this adds one tiny exec: about 1.0-1.1x.
 *
 * Why no libc on x86-64: a static glibc's start-up (CPU feature probing, TLS, IRELATIVE
 * relocations) cost 1.25x where this costs 1.05x. Elsewhere it builds against libc
 * (-DCGEXEC_LIBC, or any other architecture): correct, only slower.
 *
 * Exit codes as a shell's: 126 if the cgroup cannot be joined (the agent never runs
 * outside it), 127 if PROGRAM does not exist, 126 if it cannot be executed.
 * Built by `make` (see the Makefile); the runtime falls back to the shell shim without it.
 */
#include <fcntl.h>
#include <sys/syscall.h>

#define ENOENT_ 2

#if defined(__x86_64__) && !defined(CGEXEC_LIBC)

static long sys3(long nr, long a, long b, long c) {
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c)
                     : "rcx", "r11", "memory");
    return ret; /* -errno on failure */
}

static long sys4(long nr, long a, long b, long c, long d) {
    long ret;
    register long r10 __asm__("r10") = d;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10)
                     : "rcx", "r11", "memory");
    return ret;
}

static __attribute__((noreturn)) void quit(int code) {
    for (;;) sys3(SYS_exit_group, code, 0, 0);
}

#define GETPID() sys3(SYS_getpid, 0, 0, 0)
#define OPEN(path) sys4(SYS_openat, AT_FDCWD, (long)(path), O_WRONLY | O_CLOEXEC, 0)
#define WRITE(fd, buf, n) sys3(SYS_write, (fd), (long)(buf), (n))
#define CLOSE(fd) sys3(SYS_close, (fd), 0, 0)
#define EXECV(path, argv, envp) sys3(SYS_execve, (long)(path), (long)(argv), (long)(envp))
#define FAILED(ret) ((ret) < 0)
#define ERRNO(ret) (-(ret))

static int cgexec(int argc, char **argv, char **envp);

/* The kernel's entry: argc, argv..., NULL, envp... on the stack; no libc to set it up. */
__attribute__((used)) static void start_c(long *sp) {
    int argc = (int)sp[0];
    char **argv = (char **)(sp + 1);
    quit(cgexec(argc, argv, argv + argc + 1));
}
__asm__(".text\n.globl _start\n_start:\n"
        "  xor %rbp, %rbp\n  mov %rsp, %rdi\n  and $-16, %rsp\n  call start_c\n  hlt\n");

#else /* libc: portable */

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static long failed_errno(long ret) { return ret < 0 ? -errno : ret; }

#define GETPID() ((long)getpid())
#define OPEN(path) failed_errno(open((path), O_WRONLY | O_CLOEXEC))
#define WRITE(fd, buf, n) failed_errno(write((int)(fd), (buf), (unsigned long)(n)))
#define CLOSE(fd) close((int)(fd))
#define EXECV(path, argv, envp) failed_errno(execve((path), (argv), (envp)))
#define FAILED(ret) ((ret) < 0)
#define ERRNO(ret) (-(ret))

static int cgexec(int argc, char **argv, char **envp);
int main(int argc, char **argv, char **envp) { return cgexec(argc, argv, envp); }

#endif

static unsigned long length(const char *s) {
    unsigned long n = 0;
    while (s[n]) n++;
    return n;
}

static void say(const char *text) { WRITE(2, text, length(text)); }

/* "ziggie-cgexec: <what> <subject> (errno N)\n" on stderr, without stdio. */
static void complain(const char *what, const char *subject, long err) {
    char num[24];
    int n = sizeof num;
    num[--n] = '\n';
    num[--n] = ')';
    do {
        num[--n] = (char)('0' + err % 10);
        err /= 10;
    } while (err && n > 0);
    say("ziggie-cgexec: ");
    say(what);
    say(subject);
    say(" (errno ");
    WRITE(2, num + n, sizeof num - n);
}

static int cgexec(int argc, char **argv, char **envp) {
    if (argc < 4) {
        say("usage: ziggie-cgexec CGROUP_PROCS PROGRAM ARGV0 [ARG...]\n");
        return 126;
    }
    char pid[24];
    int n = sizeof pid;
    unsigned long v = (unsigned long)GETPID();
    pid[--n] = '\n';
    do {
        pid[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    long fd = OPEN(argv[1]);
    if (FAILED(fd)) {
        complain("cannot open ", argv[1], ERRNO(fd));
        return 126;
    }
    long wrote = WRITE(fd, pid + n, sizeof pid - n);
    if (FAILED(wrote)) {
        complain("cannot join ", argv[1], ERRNO(wrote));
        return 126;
    }
    CLOSE(fd);
    long err = ERRNO(EXECV(argv[2], argv + 3, envp));
    complain("cannot execute ", argv[2], err);
    return err == ENOENT_ ? 127 : 126;
}
