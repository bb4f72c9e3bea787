/* cli.h - the pieces of the quiver program. */
#ifndef QV_CLI_H
#define QV_CLI_H

#include <stdio.h>

#include "quiver.h"

/* `quiver bench KIND ...`; argv[0] is KIND. Returns the exit status. */
int bench_main(int argc, char **argv);
int bench_flat(int argc, char **argv);
int bench_ann(int argc, char **argv);
int bench_server(int argc, char **argv);

/* Run shell commands read from in until end of input or `quit`.
 * Returns the exit status: 0 when every command succeeded. */
int shell_run(qv_db *db, FILE *in, int interactive);

/* Seconds on the monotonic clock. */
double cli_now(void);

#endif
