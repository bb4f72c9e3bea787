/*
 * fuzz_util.h - what the libFuzzer targets share: a scratch directory
 * that goes away with the process.
 */
#ifndef QV_FUZZ_UTIL_H
#define QV_FUZZ_UTIL_H

/*
 * A fresh directory $TMPDIR/quiver-fuzz-XXXXXX (/tmp without TMPDIR),
 * removed with everything in it when the process exits through exit():
 * libFuzzer's end of -runs=N or -max_total_time, and a target's own
 * exit. A crash or a sanitizer report ends the process with _exit and
 * leaves it: fuzz/run.sh runs every target with a private TMPDIR that it
 * removes afterwards. The returned path stays valid until exit. Aborts
 * when the directory cannot be made.
 */
const char *fuzz_scratch_dir(void);

#endif
