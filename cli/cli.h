/* cli.h - the pieces of the quiver program. */
#ifndef QV_CLI_H
#define QV_CLI_H

#include <stdio.h>

#include "db/quiver.h"

/* The bench programs: argv[0] is their kind. Each returns the exit status. */
int bench_flat(int argc, char **argv);
int bench_ann(int argc, char **argv);
int bench_server(int argc, char **argv);
int bench_filter(int argc, char **argv);
int bench_embed(int argc, char **argv);
int bench_duplicates(int argc, char **argv);
int bench_writes(int argc, char **argv);
int bench_churn(int argc, char **argv);
int bench_cluster(int argc, char **argv);

/* Seconds on the monotonic clock. */
double cli_now(void);

#endif
