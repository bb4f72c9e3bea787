/*
 * command.c - what every shell command uses: a command line split into
 * words, options and JSON values (jansson parses JSON where it stands, so
 * vectors, payloads and quoted ids need no escaping rules of their own),
 * its options checked, and its answer printed as text or as one JSON
 * object. The commands (shell.c, table_cmd.c, transfer.c) call it; it
 * calls none of them.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli/shell.h"
#include "common/alloc.h"
#include "common/json.h"

/* ---- parsing ---- */

/* Parse one JSON value at p; its end in *end. NULL with err set. */
static json_t *parse_json_at(const char *p, const char **end, char *err,
                             size_t errlen)
{
    json_error_t jerr;
    json_t *v;
    int rc = qv_json_load(p, strlen(p), JSON_DISABLE_EOF_CHECK |
                                            JSON_DECODE_ANY |
                                            JSON_REJECT_DUPLICATES,
                          &jerr, &v);
    if (rc != 0) {
        snprintf(err, errlen, "bad JSON at '%.30s': %s", p,
                 rc == ENOMEM ? "out of memory" : jerr.text);
        return NULL;
    }
    *end = p + jerr.position;
    return v;
}

static int starts_json(char c)
{
    return c == '[' || c == '{' || c == '"';
}

/* A JSON value at p as the argument's value: its text is the string for
 * a JSON string, else the JSON as written. Advances *pp. */
static int json_value_arg(const char **pp, shell_arg *a, char *err,
                          size_t errlen)
{
    const char *p = *pp, *end;
    if (!(a->json = parse_json_at(p, &end, err, errlen)))
        return -1;
    a->text = json_is_string(a->json)
                  ? qv_strndup(json_string_value(a->json),
                               strlen(json_string_value(a->json)))
                  : qv_strndup(p, (size_t)(end - p));
    *pp = end;
    return a->text ? 0 : -1;
}

/* One argument at p; advances *pp. */
static int parse_arg(const char **pp, shell_arg *a, char *err, size_t errlen)
{
    const char *p = *pp, *end;
    memset(a, 0, sizeof *a);
    if (starts_json(*p))
        return json_value_arg(pp, a, err, errlen);
    end = p;
    while (*end && !isspace((unsigned char)*end) && *end != '=')
        end++;
    if (*end == '=' && end > p) {
        a->key = qv_strndup(p, (size_t)(end - p));
        p = end + 1;
        if (starts_json(*p)) {
            *pp = p;
            return json_value_arg(pp, a, err, errlen);
        }
        end = p;
    }
    while (*end && !isspace((unsigned char)*end))
        end++;
    a->text = qv_strndup(p, (size_t)(end - p));
    *pp = end;
    return a->text ? 0 : -1;
}

int shell_parse(const char *line, shell_cmd *cmd, char *err, size_t errlen)
{
    const char *p = line;
    cmd->n = 0;
    for (;;) {
        while (isspace((unsigned char)*p))
            p++;
        if (!*p || (*p == '#' && cmd->n == 0))
            return 0;
        if (cmd->n == SHELL_MAX_ARGS) {
            snprintf(err, errlen, "more than %d arguments", SHELL_MAX_ARGS);
            return -1;
        }
        if (parse_arg(&p, &cmd->args[cmd->n], err, errlen) != 0) {
            shell_arg *a = &cmd->args[cmd->n];
            qv_mem_free(a->key);
            json_decref(a->json);
            return -1;
        }
        cmd->n++;
        if (*p && !isspace((unsigned char)*p)) {
            snprintf(err, errlen, "expected a space after '%s'",
                     cmd->args[cmd->n - 1].text);
            return -1;
        }
    }
}

void shell_cmd_free(shell_cmd *cmd)
{
    for (int i = 0; i < cmd->n; i++) {
        qv_mem_free(cmd->args[i].key);
        qv_mem_free(cmd->args[i].text);
        json_decref(cmd->args[i].json);
    }
    cmd->n = 0;
}

/* ---- output ---- */

void shell_emit(shell *sh, json_t *obj)
{
    if (sh->json) {
        char *s = obj ? json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER |
                                            JSON_REAL_PRECISION(9))
                      : NULL;
        puts(s ? s : "{\"error\":{\"code\":\"NOMEM\",\"message\":"
                     "\"out of memory for the output\"}}");
        sh->output_lost |= !s;
        free(s);
    }
    json_decref(obj);
}

void shell_emit_fields(shell *sh, json_t *obj)
{
    if (!sh->json && obj) {
        const char *key;
        json_t *v;
        json_object_foreach(obj, key, v) {
            char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(6));
            printf("%-16s %s\n", key, json_is_string(v) ? json_string_value(v)
                                       : s ? s : "(out of memory)");
            free(s);
        }
    }
    shell_emit(sh, obj);
}

int shell_ok(shell *sh)
{
    if (sh->json)
        shell_emit(sh, json_pack("{s:b}", "ok", 1));
    else
        puts("ok");
    return 0;
}

int shell_fail(shell *sh, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (sh->json) {
        shell_emit(sh, json_pack("{s:{s:s, s:s}}", "error", "code", code,
                                 "message", msg));
    } else if (sh->line) {
        fprintf(stderr, "error: line %lu: %s: %s\n", sh->line, code, msg);
    } else {
        fprintf(stderr, "error: %s: %s\n", code, msg);
    }
    return 1;
}

int shell_api_fail(shell *sh, qv_status st)
{
    return shell_fail(sh, qv_status_name(st), "%s", qv_errmsg(sh->db));
}

/* ---- argument helpers ---- */

const shell_arg *shell_option(const shell_cmd *cmd, const char *key)
{
    for (int i = 1; i < cmd->n; i++) {
        if (cmd->args[i].key && strcmp(cmd->args[i].key, key) == 0)
            return &cmd->args[i];
    }
    return NULL;
}

/* Exactly `positional` positional arguments after the name, options only
 * from allowed (NULL-terminated), none twice. */
int shell_check_options(shell *sh, const shell_cmd *cmd, int positional,
                        const char *const *allowed)
{
    int seen = 0;
    for (int i = 1; i < cmd->n; i++) {
        const shell_arg *a = &cmd->args[i];
        if (!a->key) {
            seen++;
            continue;
        }
        int ok = 0;
        for (int j = 0; allowed && allowed[j] && !ok; j++)
            ok = strcmp(a->key, allowed[j]) == 0;
        if (!ok)
            return shell_fail(sh, "INVALID", "%s: unknown option '%s'; see "
                              "help %s", cmd->args[0].text, a->key,
                              cmd->args[0].text);
        if (shell_option(cmd, a->key) != a)
            return shell_fail(sh, "INVALID", "%s: option '%s' given twice",
                              cmd->args[0].text, a->key);
    }
    if (seen != positional)
        return shell_fail(sh, "INVALID", "%s takes %d argument%s before its "
                          "options, not %d; see help %s", cmd->args[0].text,
                          positional, positional == 1 ? "" : "s", seen,
                          cmd->args[0].text);
    return 0;
}

int shell_u32_option(shell *sh, const shell_cmd *cmd, const char *key,
                     uint32_t min, uint32_t max, uint32_t *out)
{
    const shell_arg *a = shell_option(cmd, key);
    if (!a)
        return 0;
    char *end;
    long long v = strtoll(a->text, &end, 10);
    if (a->json || end == a->text || *end || v < min || v > max)
        return shell_fail(sh, "INVALID", "%s must be a whole number from %u "
                          "to %u, not '%s'", key, min, max, a->text);
    *out = (uint32_t)v;
    return 0;
}

const char *shell_float_text(float f, char buf[SHELL_FLOAT_CHARS])
{
    for (int digits = 6; digits < 9; digits++) {
        snprintf(buf, SHELL_FLOAT_CHARS, "%.*g", digits, (double)f);
        if (strtof(buf, NULL) == f)
            return buf;
    }
    snprintf(buf, SHELL_FLOAT_CHARS, "%.9g", (double)f);
    return buf;
}

/* The double nearest the float's shortest decimal, not the float
 * widened: printed with 9 digits it is that decimal again, where the
 * widened float shows its binary tail (0.345580012). */
json_t *shell_float_json(float f)
{
    char buf[SHELL_FLOAT_CHARS];
    return json_real(strtod(shell_float_text(f, buf), NULL));
}

const char *shell_plural(unsigned long long n)
{
    return n == 1 ? "" : "s";
}

const char *shell_positional(const shell_cmd *cmd, int i)
{
    for (int j = 1; j < cmd->n; j++) {
        if (!cmd->args[j].key && --i == 0)
            return cmd->args[j].text;
    }
    return NULL;
}
