/*
 * shell.h - the quiver shell's commands, shared by the line reader
 * (main.c), the command table (shell.c) and import/export (transfer.c).
 */
#ifndef QV_CLI_SHELL_H
#define QV_CLI_SHELL_H

#include <jansson.h>
#include <stdio.h>

#include "db/quiver.h"

#define SHELL_MAX_ARGS 32

/* One argument of a command line: a bare word, "key=value", or a JSON
 * value ([..], {..}, "..."); a key's value may be JSON too. */
typedef struct shell_arg {
    char *key;        /* NULL for a positional argument */
    char *text;       /* the word, or the value's text */
    json_t *json;     /* the parsed value when it was JSON, else NULL */
} shell_arg;

typedef struct shell_cmd {
    shell_arg args[SHELL_MAX_ARGS];   /* args[0] is the command's name */
    int n;
} shell_cmd;

typedef struct shell {
    qv_db *db;
    int json;             /* each command prints one JSON object */
    int progress;         /* progress bars on stderr */
    unsigned long line;   /* of the script, for messages */
    int output_lost;      /* this command's JSON object could not be made */
} shell;

/* Split a command line. 0, or -1 with the reason in err. */
int shell_parse(const char *line, shell_cmd *cmd, char *err, size_t errlen);
void shell_cmd_free(shell_cmd *cmd);

/* Run one command line. Returns 0 on success, 1 on failure, -1 on quit. */
int shell_run_line(shell *sh, const char *line);

/* Names of the commands, NULL-terminated (for completion and help). */
extern const char *const shell_command_names[];

/* Output. In JSON mode: one object on one stdout line; otherwise text. */
int shell_ok(shell *sh);
int shell_fail(shell *sh, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int shell_api_fail(shell *sh, qv_status st);
/* Print obj (JSON mode) and release it; text mode prints nothing. obj
 * may be NULL (memory ran out building it): JSON mode then prints an
 * error object with code NOMEM in its place, and the command fails. */
void shell_emit(shell *sh, json_t *obj);
/* The same; in text mode each field of obj on a line of its own. */
void shell_emit_fields(shell *sh, json_t *obj);

/* Helpers for commands. */
const shell_arg *shell_option(const shell_cmd *cmd, const char *key);
int shell_check_options(shell *sh, const shell_cmd *cmd, int positional,
                        const char *const *allowed);
int shell_u32_option(shell *sh, const shell_cmd *cmd, const char *key,
                     uint32_t min, uint32_t max, uint32_t *out);

/* Floats as text: the shortest of "%.6g" to "%.9g" that reads back as
 * the same float (9 digits always do), not 9 digits of noise. */
#define SHELL_FLOAT_CHARS 32
const char *shell_float_text(float f, char buf[SHELL_FLOAT_CHARS]);
/* f as a JSON number that prints in that shortest form (output is
 * dumped at JSON_REAL_PRECISION(9)); NULL when memory ran out. */
json_t *shell_float_json(float f);

/* "s" unless n is 1, for "%llu row%s". */
const char *shell_plural(unsigned long long n);

/* The i-th positional argument (1 = the first after the command). */
const char *shell_positional(const shell_cmd *cmd, int i);

/* table_cmd.c */
int cmd_table(shell *sh, const shell_cmd *cmd);
/* The usage of table subcommand i; NULL past the last (help table). */
const char *table_usage(size_t i);
int cmd_tables(shell *sh, const shell_cmd *cmd);

/* transfer.c */
int cmd_import(shell *sh, const shell_cmd *cmd);
/* The rows of a vector file (fvecs, bvecs or npy, by the name's ending),
 * one at a time, for table import. open: 0, or -1 with err naming the
 * file and what is wrong. read: 1 for a row of shell_rows_dim() floats,
 * 0 at the end, -1 with err naming the row. count: the rows the file's
 * size or header promises. close accepts NULL. */
typedef struct shell_rows shell_rows;
int shell_rows_open(const char *path, shell_rows **out, char *err,
                    size_t errlen);
uint32_t shell_rows_dim(const shell_rows *r);
uint64_t shell_rows_count(const shell_rows *r);
int shell_rows_read(shell_rows *r, float *row, char *err, size_t errlen);
void shell_rows_close(shell_rows *r);
int cmd_export(shell *sh, const shell_cmd *cmd);

#endif
