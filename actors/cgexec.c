/*
 * ziggie-cgexec: put a process in its cgroup and its confinement, then exec the agent.
 *
 *     ziggie-cgexec [-g PROCS] [-L FS NET SCOPED] [-r MASK PATH]... [-p MASK PORT]...
 *                   [-c] -- PROGRAM ARGV0 [ARG...]
 *
 *   -g PROCS          write our pid to PROCS (a cgroup's cgroup.procs): join it
 *   -L FS NET SCOPED  create a Landlock ruleset handling these access masks (hex);
 *                     with it, no_new_privs is set and the ruleset enforced before exec
 *   -r MASK PATH      allow MASK (hex) beneath PATH; a PATH that does not exist, or
 *                     holds a symlink, is skipped (less access, never more). Only
 *                     "/proc/self" is followed: our own pid directory, which stays the
 *                     agent's after exec
 *   -p MASK PORT      allow the TCP rights MASK (hex: 1 bind, 2 connect) on PORT
 *   -c                drop every capability (bounding, ambient, effective, permitted,
 *                     inheritable), so a root agent holds none after exec
 *
 * then execve(PROGRAM, [ARGV0, ARG...], environ). The agent therefore starts inside its
 * cgroup and its Landlock domain, and every process it forks does too.
 *
 * Why a separate exec: CPython can only act in the child through preexec_fn, which costs
 * its vfork fast path (spawns measured 12x slower) and runs Python between fork and exec.
 * Linked statically without libc on x86-64, this adds one tiny exec (about 1.0-1.1x a
 * bare Popen loop, measured); the rules cost a few microseconds of syscalls. The same
 * protocol has a Python implementation (actors/_shim.py) for machines without cc.
 *
 * Exit codes as a shell's: 126 if the cgroup cannot be joined or the confinement cannot
 * be applied (the agent never runs outside them), 127 if PROGRAM does not exist, 126 if
 * it cannot be executed. Built by `make` (see the Makefile).
 */
#include <fcntl.h>
#include <sys/syscall.h>

#define ENOENT_ 2
#define EINVAL_ 22

#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_add_rule 445
#define SYS_landlock_restrict_self 446
#endif

#if defined(__x86_64__) && !defined(CGEXEC_LIBC)

static long sys6(long nr, long a, long b, long c, long d, long e, long f) {
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret; /* -errno on failure */
}
#define SYSCALL(nr, a, b, c, d, e) sys6((nr), (long)(a), (long)(b), (long)(c), (long)(d), \
                                        (long)(e), 0)
#define FAILED(ret) ((ret) < 0)
#define ERRNO(ret) (-(ret))

static __attribute__((noreturn)) void quit(int code) {
    for (;;) SYSCALL(SYS_exit_group, code, 0, 0, 0, 0);
}

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
#include <unistd.h>

static long libc_syscall(long nr, long a, long b, long c, long d, long e) {
    long ret = syscall(nr, a, b, c, d, e);
    return ret < 0 ? -errno : ret;
}
#define SYSCALL(nr, a, b, c, d, e) libc_syscall((nr), (long)(a), (long)(b), (long)(c), \
                                                (long)(d), (long)(e))
#define FAILED(ret) ((ret) < 0)
#define ERRNO(ret) (-(ret))

static int cgexec(int argc, char **argv, char **envp);
int main(int argc, char **argv, char **envp) { return cgexec(argc, argv, envp); }

#endif

#define OPEN(path, flags) SYSCALL(SYS_openat, AT_FDCWD, (path), (flags), 0, 0)
#define WRITE(fd, buf, n) SYSCALL(SYS_write, (fd), (buf), (n), 0, 0)
#define CLOSE(fd) SYSCALL(SYS_close, (fd), 0, 0, 0, 0)
#define PRCTL(op, arg) SYSCALL(SYS_prctl, (op), (arg), 0, 0, 0)

#define PR_CAPBSET_DROP_ 24
#define PR_SET_NO_NEW_PRIVS_ 38
#define PR_CAP_AMBIENT_ 47
#define PR_CAP_AMBIENT_CLEAR_ALL_ 4
#define O_PATH_ 010000000
#define SYS_openat2_ 437
#define RESOLVE_NO_SYMLINKS_ 0x04
#define ENOSYS_ 38
#define RULE_PATH_BENEATH 1
#define RULE_NET_PORT 2
/* The rights Landlock accepts on a file (not a directory): execute, write, read,
 * truncate, ioctl on devices. */
#define FILE_RIGHTS ((1UL << 0) | (1UL << 1) | (1UL << 2) | (1UL << 14) | (1UL << 15))

struct ruleset_attr {
    unsigned long handled_access_fs, handled_access_net, scoped;
};
struct __attribute__((packed)) path_beneath_attr {
    unsigned long allowed_access;
    int parent_fd;
};
struct net_port_attr {
    unsigned long allowed_access, port;
};
struct open_how {
    unsigned long flags, mode, resolve;
};
struct cap_header {
    unsigned int version;
    int pid;
};
struct cap_data {
    unsigned int effective, permitted, inheritable;
};

static unsigned long length(const char *s) {
    unsigned long n = 0;
    while (s[n]) n++;
    return n;
}

static int same(const char *a, const char *b) {
    while (*a && *a == *b) a++, b++;
    return *a == *b;
}

static void say(const char *text) { WRITE(2, text, length(text)); }

/* "ziggie-cgexec: <what> <subject> (errno N)\n" on stderr, without stdio. */
static int complain(const char *what, const char *subject, long err) {
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
    return 126;
}

/* A hex (masks) or decimal (ports) number; -1 if it is not one. */
static long number(const char *s, int base) {
    long v = 0;
    if (!*s) return -1;
    for (; *s; s++) {
        int d;
        if (*s >= '0' && *s <= '9') d = *s - '0';
        else if (base == 16 && *s >= 'a' && *s <= 'f') d = *s - 'a' + 10;
        else return -1;
        v = v * base + d;
    }
    return v;
}

static int usage(void) {
    say("usage: ziggie-cgexec [-g PROCS] [-L FS NET SCOPED] [-r MASK PATH]... "
        "[-p MASK PORT]... [-c] -- PROGRAM ARGV0 [ARG...]\n");
    return 126;
}

static int join(const char *procs) {
    char pid[24];
    int n = sizeof pid;
    unsigned long v = (unsigned long)SYSCALL(SYS_getpid, 0, 0, 0, 0, 0);
    pid[--n] = '\n';
    do {
        pid[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    long fd = OPEN(procs, O_WRONLY | O_CLOEXEC);
    if (FAILED(fd)) return complain("cannot open ", procs, ERRNO(fd));
    long wrote = WRITE(fd, pid + n, sizeof pid - n);
    if (FAILED(wrote)) return complain("cannot join ", procs, ERRNO(wrote));
    CLOSE(fd);
    return 0;
}

/* Opened without following any symlink (the paths are real paths): a link swapped in
 * after the coordinator's checks grants nothing. "/proc/self" is the one followed. */
static long open_rule_path(const char *path) {
    if (same(path, "/proc/self")) return OPEN(path, O_PATH_ | O_CLOEXEC);
    struct open_how how = {O_PATH_ | O_CLOEXEC, 0, RESOLVE_NO_SYMLINKS_};
    long fd = SYSCALL(SYS_openat2_, AT_FDCWD, path, &how, sizeof how, 0);
    if (FAILED(fd) && ERRNO(fd) == ENOSYS_) /* before Linux 5.6: the last component only */
        fd = OPEN(path, O_PATH_ | O_CLOEXEC | O_NOFOLLOW);
    return fd;
}

static int allow_path(long ruleset, long mask, const char *path) {
    long fd = open_rule_path(path);
    if (FAILED(fd)) return 0; /* absent (or unreachable): no rule, so no access */
    struct path_beneath_attr rule = {(unsigned long)mask, (int)fd};
    long ret = SYSCALL(SYS_landlock_add_rule, ruleset, RULE_PATH_BENEATH, &rule, 0, 0);
    if (FAILED(ret) && ERRNO(ret) == EINVAL_ && (mask & ~FILE_RIGHTS)) {
        rule.allowed_access = (unsigned long)mask & FILE_RIGHTS; /* a file, not a directory */
        ret = SYSCALL(SYS_landlock_add_rule, ruleset, RULE_PATH_BENEATH, &rule, 0, 0);
    }
    CLOSE(fd);
    return FAILED(ret) ? complain("cannot add a rule for ", path, ERRNO(ret)) : 0;
}

static int drop_capabilities(void) {
    for (long cap = 0; cap < 64; cap++) PRCTL(PR_CAPBSET_DROP_, cap); /* EINVAL past the last */
    SYSCALL(SYS_prctl, PR_CAP_AMBIENT_, PR_CAP_AMBIENT_CLEAR_ALL_, 0, 0, 0);
    struct cap_header header = {0x20080522, 0}; /* _LINUX_CAPABILITY_VERSION_3 */
    struct cap_data data[2] = {{0, 0, 0}, {0, 0, 0}};
    long ret = SYSCALL(SYS_capset, &header, data, 0, 0, 0);
    return FAILED(ret) ? complain("cannot drop ", "capabilities", ERRNO(ret)) : 0;
}

static int cgexec(int argc, char **argv, char **envp) {
    const char *procs = 0;
    long ruleset = -1;
    int caps = 0, i = 1, err;
    for (; i < argc && !same(argv[i], "--"); i++) {
        const char *opt = argv[i];
        if (same(opt, "-g") && i + 1 < argc) {
            procs = argv[++i];
        } else if (same(opt, "-L") && i + 3 < argc && ruleset < 0) {
            struct ruleset_attr attr = {(unsigned long)number(argv[i + 1], 16),
                                        (unsigned long)number(argv[i + 2], 16),
                                        (unsigned long)number(argv[i + 3], 16)};
            unsigned long size = attr.scoped ? 24 : attr.handled_access_net ? 16 : 8;
            i += 3;
            ruleset = SYSCALL(SYS_landlock_create_ruleset, &attr, size, 0, 0, 0);
            if (FAILED(ruleset)) return complain("cannot create ", "a Landlock ruleset", ERRNO(ruleset));
        } else if (same(opt, "-r") && i + 2 < argc && ruleset >= 0) {
            long mask = number(argv[i + 1], 16);
            if (mask < 0) return usage();
            if ((err = allow_path(ruleset, mask, argv[i + 2]))) return err;
            i += 2;
        } else if (same(opt, "-p") && i + 2 < argc && ruleset >= 0) {
            long mask = number(argv[i + 1], 16), port = number(argv[i + 2], 10);
            if (mask < 0 || port < 0 || port > 65535) return usage();
            struct net_port_attr rule = {(unsigned long)mask, (unsigned long)port};
            long ret = SYSCALL(SYS_landlock_add_rule, ruleset, RULE_NET_PORT, &rule, 0, 0);
            if (FAILED(ret)) return complain("cannot add a rule for port ", argv[i + 2], ERRNO(ret));
            i += 2;
        } else if (same(opt, "-c")) {
            caps = 1;
        } else {
            return usage();
        }
    }
    if (i + 2 >= argc) return usage(); /* "--", PROGRAM and ARGV0 are needed */
    if (procs && (err = join(procs))) return err; /* before confinement: it writes /sys */
    if (caps && (err = drop_capabilities())) return err;
    if (ruleset >= 0) {
        long ret = PRCTL(PR_SET_NO_NEW_PRIVS_, 1);
        if (FAILED(ret)) return complain("cannot set ", "no_new_privs", ERRNO(ret));
        ret = SYSCALL(SYS_landlock_restrict_self, ruleset, 0, 0, 0, 0);
        if (FAILED(ret)) return complain("cannot enforce ", "the Landlock ruleset", ERRNO(ret));
        CLOSE(ruleset);
    }
    long ret = SYSCALL(SYS_execve, argv[i + 1], argv + i + 2, envp, 0, 0);
    complain("cannot execute ", argv[i + 1], ERRNO(ret));
    return ERRNO(ret) == ENOENT_ ? 127 : 126;
}
