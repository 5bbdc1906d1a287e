/* CPUID mask for benchmarks: make a process see an AVX2-only x86-64 CPU.
 *
 * Loaded with LD_PRELOAD by bench/cpuid_mask.py. Its constructor turns on Linux
 * CPUID faulting for the process (arch_prctl ARCH_SET_CPUID 0; the flag is per
 * thread and inherited by threads created later), so every CPUID instruction
 * raises SIGSEGV. The handler runs the real CPUID with faulting briefly off,
 * clears the bits of AVX-512, AMX, AVX-VNNI and AVX10 in leaf 7 (Intel SDM
 * vol. 2A, CPUID leaf 07H sub-leaves 0 and 1), writes the result into the
 * interrupted registers and skips the 2-byte instruction. onnxruntime (MLAS),
 * XNNPACK, OpenBLAS and LLVM's host detection then choose their AVX2 code.
 *
 * Libraries install SIGSEGV handlers of their own (TVM's crash reporter,
 * Python's faulthandler). sigaction() and signal() are interposed for SIGSEGV:
 * the program's handler is recorded and called for every fault that is not a
 * CPUID, and this handler stays installed. Glibc's own start-up detection ran
 * before the constructor and is not masked (its string functions may still use
 * EVEX instructions): a known limit of the proxy.
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);

static struct sigaction program_segv; /* what the program asked for; SIG_DFL at start */

static int set_cpuid_enabled(int enabled) {
    return (int)syscall(SYS_arch_prctl, ARCH_SET_CPUID, enabled);
}

static sigaction_fn real_sigaction(void) {
    static sigaction_fn fn;
    if (!fn) fn = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
    return fn;
}

static void mask_leaf7(unsigned sub, unsigned *a, unsigned *b, unsigned *c, unsigned *d) {
    if (sub == 0) {
        /* EBX: AVX512F 16, DQ 17, IFMA 21, PF 26, ER 27, CD 28, BW 30, VL 31 */
        *b &= ~((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) |
                (1u << 30) | (1u << 31));
        /* ECX: VBMI 1, VBMI2 6, VNNI 11, BITALG 12, VPOPCNTDQ 14 */
        *c &= ~((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14));
        /* EDX: 4VNNIW 2, 4FMAPS 3, VP2INTERSECT 8, AMX-BF16 22, AVX512-FP16 23,
           AMX-TILE 24, AMX-INT8 25 */
        *d &= ~((1u << 2) | (1u << 3) | (1u << 8) | (1u << 22) | (1u << 23) | (1u << 24) |
                (1u << 25));
    } else if (sub == 1) {
        /* EAX: AVX-VNNI 4, AVX512-BF16 5, AMX-FP16 21, AVX-IFMA 23 */
        *a &= ~((1u << 4) | (1u << 5) | (1u << 21) | (1u << 23));
        /* EDX: AVX-VNNI-INT8 4, AVX-NE-CONVERT 5, AVX10 19 */
        *d &= ~((1u << 4) | (1u << 5) | (1u << 19));
    }
}

static void forward(int sig, siginfo_t *info, void *raw) {
    struct sigaction prog = program_segv;
    if (prog.sa_flags & SA_SIGINFO) {
        prog.sa_sigaction(sig, info, raw);
    } else if (prog.sa_handler != SIG_DFL && prog.sa_handler != SIG_IGN) {
        prog.sa_handler(sig);
    } else { /* default action: re-raise on return */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        real_sigaction()(SIGSEGV, &dfl, NULL);
    }
}

static void on_segv(int sig, siginfo_t *info, void *raw) {
    ucontext_t *uc = (ucontext_t *)raw;
    greg_t *r = uc->uc_mcontext.gregs;
    const uint8_t *ip = (const uint8_t *)r[REG_RIP];
    if (info->si_code != SI_KERNEL || ip[0] != 0x0f || ip[1] != 0xa2) {
        forward(sig, info, raw);
        return;
    }
    unsigned leaf = (unsigned)r[REG_RAX], sub = (unsigned)r[REG_RCX];
    unsigned a, b, c, d;
    set_cpuid_enabled(1);
    __cpuid_count(leaf, sub, a, b, c, d);
    set_cpuid_enabled(0);
    if (leaf == 7) mask_leaf7(sub, &a, &b, &c, &d);
    r[REG_RAX] = a;
    r[REG_RBX] = b;
    r[REG_RCX] = c;
    r[REG_RDX] = d;
    r[REG_RIP] += 2;
}

int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    if (sig != SIGSEGV) return real_sigaction()(sig, act, old);
    if (old) *old = program_segv;
    if (act) program_segv = *act;
    return 0;
}

sighandler_t signal(int sig, sighandler_t handler) {
    if (sig != SIGSEGV) {
        struct sigaction act, old;
        memset(&act, 0, sizeof act);
        act.sa_handler = handler;
        act.sa_flags = SA_RESTART;
        if (real_sigaction()(sig, &act, &old) != 0) return SIG_ERR;
        return old.sa_handler;
    }
    sighandler_t previous = program_segv.sa_handler;
    memset(&program_segv, 0, sizeof program_segv);
    program_segv.sa_handler = handler;
    return previous;
}

__attribute__((constructor)) static void install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    program_segv.sa_handler = SIG_DFL;
    real_sigaction()(SIGSEGV, &sa, NULL);
    set_cpuid_enabled(0);
}
