// phase_pause: an LD_PRELOAD shim for lwm2m-loadgen (bench/server_load.py, paired echoes).
//
// lwm2m-loadgen runs its Register phase and then, at once, its Update phase, printing one JSON
// line per phase and fflush()ing stdout after each.  To measure the echo ceiling *between* the
// two phases (right after Register, right before Update) the generator must wait there: this
// shim wraps fflush() and, after a flush of stdout, blocks reading one byte from the file
// descriptor named by LOADGEN_PAUSE_FD, after writing one byte to LOADGEN_PAUSED_FD (so the
// benchmark knows the generator really waits).  The benchmark reads the phase's line, runs its
// echo burst, then writes a byte (or closes the pipe: EOF also releases it).  Each phase takes its
// start time and its CPU/RSS readings after fflush returns, so the wait is in no phase.
// Without LOADGEN_PAUSE_FD the shim does nothing.  The generator itself is not modified: it is
// an instrument shared outside the project (../shared/tools/lwm2m-loadgen).
//
// Build: cc -O2 -shared -fPIC -o phase_pause.so phase_pause.c -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int fflush(FILE *f) {
    static int (*real)(FILE *) = NULL;
    if (!real) real = (int (*)(FILE *))dlsym(RTLD_NEXT, "fflush");
    int result = real(f);
    const char *fd = getenv("LOADGEN_PAUSE_FD");
    const char *ack = getenv("LOADGEN_PAUSED_FD");
    if (f == stdout && fd != NULL && *fd) {
        char c = 'p';
        if (ack != NULL && *ack) {  // "I am waiting": the benchmark checks the shim took effect
            while (write(atoi(ack), &c, 1) < 0 && errno == EINTR) {
            }
        }
        while (read(atoi(fd), &c, 1) < 0 && errno == EINTR) {
        }
    }
    return result;
}
