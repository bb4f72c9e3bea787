/*
 * shards.c - shard of an id, shard names, placement, and the placement
 * bucket (shards.h).
 */
#include "wire/cluster/shards.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <jansson.h>
#include <xxhash.h>

#include "common/alloc.h"
#include "common/json.h"

static uint64_t name_hash(const char *name)
{
    return XXH64(name, strlen(name), 0);
}

uint32_t shard_of_id(const char *id, uint32_t shards)
{
    return (uint32_t)(XXH64(id, strlen(id), 0) % shards);
}

uint32_t shard_of_row(uint64_t id, uint32_t shards)
{
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)(id >> (8 * i));
    return (uint32_t)(XXH64(le, sizeof le, 0) % shards);
}

void shard_local_name(const shard_map *m, uint32_t shard,
                      char out[QV_NAME_MAX + 1])
{
    snprintf(out, QV_NAME_MAX + 1, SHARD_PREFIX "%016llx.%016llx.%u",
             (unsigned long long)name_hash(m->name),
             (unsigned long long)m->serial, shard);
}

void shard_name_prefix(const char *name, char out[QV_NAME_MAX + 1])
{
    snprintf(out, QV_NAME_MAX + 1, SHARD_PREFIX "%016llx.",
             (unsigned long long)name_hash(name));
}

int shard_is_prefix(const char *local)
{
    size_t plen = strlen(SHARD_PREFIX);
    return strncmp(local, SHARD_PREFIX, plen) == 0 &&
           strlen(local) == plen + 17 &&
           strspn(local + plen, "0123456789abcdef") == 16 &&
           local[plen + 16] == '.';
}

int shard_map_holds(const shard_map *m, uint32_t s, const char *node)
{
    for (uint32_t r = 0; r < m->replicas; r++)
        if (strcmp(shard_host(m, s, r), node) == 0)
            return 1;
    return 0;
}

const char *shard_joining(const shard_map *m, uint32_t s)
{
    return m->joining[s][0] ? m->joining[s] : NULL;
}

uint32_t shard_share(const shard_map *m, const char *node)
{
    uint32_t share = 0;
    for (uint32_t s = 0; s < m->shards; s++) {
        const char *joining = shard_joining(m, s);
        for (uint32_t r = 0; r < m->replicas; r++)
            share += strcmp(shard_host(m, s, r), node) == 0 &&
                     !(joining && m->replaces[s] == r);
        share += joining && strcmp(joining, node) == 0;
    }
    return share;
}

static int map_alloc(const char *name, uint64_t serial, uint32_t shards,
                     uint32_t replicas, shard_map *out, char *err,
                     size_t errlen)
{
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", name);
    out->serial = serial;
    out->shards = shards;
    out->replicas = replicas;
    out->version = 1;
    out->hosts = qv_calloc((size_t)shards * replicas, sizeof *out->hosts);
    out->since = qv_calloc((size_t)shards * replicas, sizeof *out->since);
    out->joining = qv_calloc(shards, sizeof *out->joining);
    out->replaces = qv_calloc(shards, sizeof *out->replaces);
    out->joining_since = qv_calloc(shards, sizeof *out->joining_since);
    if (!out->hosts || !out->since || !out->joining || !out->replaces ||
        !out->joining_since) {
        shard_map_release(out);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int shard_place(const char *name, uint32_t shards, uint32_t replicas,
                char *const *nodes, int n, shard_map *out, char *err,
                size_t errlen)
{
    if (replicas == 0 || n < 0 || (uint32_t)n < replicas) {
        snprintf(err, errlen, "replicas=%u needs as many live nodes; the "
                 "cluster has %d", replicas, n);
        return -1;
    }
    uint64_t serial = 0;
    while (serial == 0)
        if (getrandom(&serial, sizeof serial, 0) != sizeof serial) {
            snprintf(err, errlen, "getrandom failed");
            return -1;
        }
    char **sorted = qv_calloc((size_t)n, sizeof *sorted);
    if (!sorted ||
        map_alloc(name, serial, shards, replicas, out, err, errlen) != 0) {
        qv_mem_free(sorted);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memcpy(sorted, nodes, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, by_name);
    /* consecutive slots of the rotated ring: a shard's replicas are
     * distinct while replicas <= n, and every node gets its turn */
    uint64_t start = name_hash(name) % (uint64_t)n;
    for (uint64_t i = 0; i < (uint64_t)shards * replicas; i++)
        snprintf(out->hosts[i], SHARD_NODE_MAX, "%s",
                 sorted[(start + i) % (uint64_t)n]);
    qv_mem_free(sorted);
    return 0;
}

int shard_map_from_hosts(const char *name, uint64_t serial, uint32_t shards,
                         uint32_t replicas, char *const *hosts, size_t n,
                         shard_map *out, char *err, size_t errlen)
{
    if (serial == 0) {
        snprintf(err, errlen, "a placement without its serial");
        return -1;
    }
    if (shards == 0 || replicas == 0 || n != (size_t)shards * replicas) {
        snprintf(err, errlen, "a placement of %zu nodes for %u shards of %u "
                 "replicas", n, shards, replicas);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (strlen(hosts[i]) == 0 || strlen(hosts[i]) >= SHARD_NODE_MAX) {
            snprintf(err, errlen, "placement names a node of %zu bytes",
                     strlen(hosts[i]));
            return -1;
        }
    }
    if (map_alloc(name, serial, shards, replicas, out, err, errlen) != 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        snprintf(out->hosts[i], SHARD_NODE_MAX, "%s", hosts[i]);
    for (uint32_t s = 0; s < shards; s++) {
        for (uint32_t r = 1; r < replicas; r++) {
            for (uint32_t q = 0; q < r; q++) {
                if (strcmp(shard_host(out, s, r), shard_host(out, s, q)))
                    continue;
                snprintf(err, errlen, "placement puts two replicas of shard "
                         "%u on node '%s'", s, shard_host(out, s, r));
                shard_map_release(out);
                return -1;
            }
        }
    }
    return 0;
}

void shard_map_release(shard_map *m)
{
    if (!m)
        return;
    qv_mem_free(m->hosts);
    qv_mem_free(m->since);
    qv_mem_free(m->joining);
    qv_mem_free(m->replaces);
    qv_mem_free(m->joining_since);
    m->hosts = NULL;
    m->since = NULL;
    m->joining = NULL;
    m->replaces = NULL;
    m->joining_since = NULL;
}

int shard_map_copy(const shard_map *m, shard_map *out)
{
    char err[32];
    if (map_alloc(m->name, m->serial, m->shards, m->replicas, out, err,
                  sizeof err) != 0)
        return -1;
    memcpy(out->hosts, m->hosts,
           (size_t)m->shards * m->replicas * sizeof *m->hosts);
    memcpy(out->since, m->since,
           (size_t)m->shards * m->replicas * sizeof *m->since);
    memcpy(out->joining, m->joining, m->shards * sizeof *m->joining);
    memcpy(out->replaces, m->replaces, m->shards * sizeof *m->replaces);
    memcpy(out->joining_since, m->joining_since,
           m->shards * sizeof *m->joining_since);
    out->unlogged = m->unlogged;
    out->version = m->version;
    out->revision = m->revision;
    out->table = m->table;
    return 0;
}

/* The key of a map: 'c' (collection) or 't' (table), the name's hash. */
static void map_key(int table, const char *name, char out[24])
{
    snprintf(out, 24, "%c%016llx", table ? 't' : 'c',
             (unsigned long long)name_hash(name));
}

void shard_map_key(const char *name, char out[24])
{
    map_key(0, name, out);
}

void shard_table_key(const char *name, char out[24])
{
    map_key(1, name, out);
}

static json_int_t since_json(uint64_t since)
{
    return since == SHARD_UNLOGGED ? -1 : (json_int_t)since;
}

static uint64_t since_of_json(json_t *v)
{
    json_int_t since = json_integer_value(v);
    return since < 0 ? SHARD_UNLOGGED : (uint64_t)since;
}

/* The moves in progress: [{shard, node, replaces, since}]. */
static json_t *moves_json(const shard_map *m)
{
    json_t *moves = json_array();
    for (uint32_t s = 0; moves && s < m->shards; s++)
        if (shard_joining(m, s))
            json_array_append_new(
                moves, json_pack("{s:I, s:s, s:I, s:I}", "shard",
                                 (json_int_t)s, "node", m->joining[s],
                                 "replaces", (json_int_t)m->replaces[s],
                                 "since", since_json(m->joining_since[s])));
    return moves;
}

/* Read the moves back; those that do not fit the map are a record that
 * is no placement: -1. */
static int moves_parse(json_t *moves, shard_map *m)
{
    for (size_t i = 0; i < json_array_size(moves); i++) {
        json_t *o = json_array_get(moves, i);
        json_int_t s = json_integer_value(json_object_get(o, "shard"));
        json_int_t r = json_integer_value(json_object_get(o, "replaces"));
        const char *node = json_string_value(json_object_get(o, "node"));
        if (s < 0 || (uint64_t)s >= m->shards || r < 0 ||
            (uint64_t)r >= m->replicas || !node || !node[0] ||
            strlen(node) >= SHARD_NODE_MAX)
            return -1;
        snprintf(m->joining[s], SHARD_NODE_MAX, "%s", node);
        m->replaces[s] = (uint32_t)r;
        m->joining_since[s] = since_of_json(json_object_get(o, "since"));
    }
    return 0;
}

/* The map as JSON text (free() it), NULL when out of memory. */
static char *map_json(const shard_map *m)
{
    json_t *hosts = json_array(), *since = json_array();
    for (size_t i = 0; hosts && since &&
                       i < (size_t)m->shards * m->replicas; i++) {
        json_array_append_new(hosts, json_string(m->hosts[i]));
        json_array_append_new(since, json_integer(since_json(m->since[i])));
    }
    char serial[24];
    snprintf(serial, sizeof serial, "%016llx", (unsigned long long)m->serial);
    json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:o, s:o, s:o, s:I}",
                          "name", m->name, "serial", serial, "version",
                          (json_int_t)m->version, "shards",
                          (json_int_t)m->shards, "replicas",
                          (json_int_t)m->replicas, "hosts", hosts, "since",
                          since, "moves", moves_json(m), "unlogged",
                          (json_int_t)m->unlogged);
    if (o && m->table)   /* absent: a collection's, as before tables */
        json_object_set_new(o, "table", json_true());
    char *dumped = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    char *text = dumped ? strdup(dumped) : NULL;
    qv_json_free(dumped);
    return text;
}

/* Parse a map's JSON text: 0, or -1 (a record that is no map). */
static int map_parse(const char *text, shard_map *out, char *err,
                     size_t errlen)
{
    json_t *o = json_loads(text, 0, NULL);
    json_t *hosts = json_object_get(o, "hosts");
    const char *name = json_string_value(json_object_get(o, "name"));
    json_int_t shards = json_integer_value(json_object_get(o, "shards"));
    json_int_t replicas = json_integer_value(json_object_get(o, "replicas"));
    const char *serial = json_string_value(json_object_get(o, "serial"));
    int rc = -1;
    size_t n = json_array_size(hosts);
    char **names = n ? qv_calloc(n, sizeof *names) : NULL;
    if (!name || strlen(name) > QV_NAME_MAX || !serial || shards <= 0 ||
        shards > QV_SHARDS_MAX || replicas <= 0 ||
        replicas > QV_REPLICAS_MAX || !names) {
        snprintf(err, errlen, "the placement bucket holds a record that is "
                 "not a placement");
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        names[i] = (char *)(json_string_value(json_array_get(hosts, i))
                                ? json_string_value(json_array_get(hosts, i))
                                : "");
    rc = shard_map_from_hosts(name, strtoull(serial, NULL, 16),
                              (uint32_t)shards, (uint32_t)replicas, names, n,
                              out, err, errlen);
    json_t *since = json_object_get(o, "since");
    json_int_t version = json_integer_value(json_object_get(o, "version"));
    json_int_t unlogged = json_integer_value(json_object_get(o, "unlogged"));
    if (rc == 0) {
        out->table = json_is_true(json_object_get(o, "table"));
        out->version = version > 0 ? (uint64_t)version : 1;
        for (size_t i = 0; i < n && i < json_array_size(since); i++)
            out->since[i] = since_of_json(json_array_get(since, i));
        /* a map stored before moves existed has neither field */
        if (unlogged < 0 || unlogged > shards ||
            moves_parse(json_object_get(o, "moves"), out) != 0) {
            snprintf(err, errlen, "the placement of '%s' holds moves that "
                     "do not fit it", name);
            shard_map_release(out);
            rc = -1;
        } else {
            out->unlogged = (uint32_t)unlogged;
        }
    }
done:
    qv_mem_free(names);
    json_decref(o);
    return rc;
}

int shard_map_create(clog_kv *kv, const shard_map *m, char *err,
                     size_t errlen)
{
    char key[24], *text = map_json(m);
    if (!text) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    map_key(m->table, m->name, key);
    int rc = clog_kv_create(kv, key, text, err, errlen);
    free(text);
    return rc;
}

static int map_get(clog_kv *kv, int table, const char *name, shard_map *out,
                   int *found, char *err, size_t errlen)
{
    char key[24], *text = NULL;
    *found = 0;
    uint64_t revision = 0;
    map_key(table, name, key);
    if (clog_kv_get_rev(kv, key, &text, &revision, err, errlen) != 0)
        return -1;
    if (!text)
        return 0;
    int rc = map_parse(text, out, err, errlen);
    free(text);
    out->revision = revision;
    if (rc == 0 && (strcmp(out->name, name) != 0 || out->table != table)) {
        snprintf(err, errlen, "the placement of %s '%s' has the key of "
                 "%s '%s'", out->table ? "table" : "collection", out->name,
                 table ? "table" : "collection", name);
        shard_map_release(out);
        return -1;
    }
    *found = rc == 0;
    return rc;
}

int shard_map_get(clog_kv *kv, const char *name, shard_map *out, int *found,
                  char *err, size_t errlen)
{
    return map_get(kv, 0, name, out, found, err, errlen);
}

int shard_table_map_get(clog_kv *kv, const char *name, shard_map *out,
                        int *found, char *err, size_t errlen)
{
    return map_get(kv, 1, name, out, found, err, errlen);
}

int shard_map_update(clog_kv *kv, shard_map *m, char *err, size_t errlen)
{
    char key[24];
    m->version++;
    char *text = map_json(m);
    if (!text) {
        m->version--;
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    map_key(m->table, m->name, key);
    int rc = clog_kv_update(kv, key, text, m->revision, err, errlen);
    free(text);
    if (rc != 0)
        m->version--;
    return rc;
}

int shard_map_delete(clog_kv *kv, const char *name, char *err, size_t errlen)
{
    char key[24];
    shard_map_key(name, key);
    return clog_kv_delete(kv, key, err, errlen);
}

int shard_table_map_delete(clog_kv *kv, const char *name, char *err,
                           size_t errlen)
{
    char key[24];
    shard_table_key(name, key);
    return clog_kv_delete(kv, key, err, errlen);
}

void shard_maps_release(shard_map *maps, int n)
{
    for (int i = 0; i < n; i++)
        shard_map_release(&maps[i]);
    qv_mem_free(maps);
}

int shard_maps_all(clog_kv *kv, int tables, shard_map **maps, int *n,
                   char *err, size_t errlen)
{
    char **keys = NULL;
    int nkeys = 0, rc = 0;
    *maps = NULL;
    *n = 0;
    if (clog_kv_keys(kv, &keys, &nkeys, err, errlen) != 0)
        return -1;
    *maps = qv_calloc((size_t)nkeys + 1, sizeof **maps);
    if (!*maps) {
        snprintf(err, errlen, "out of memory");
        rc = -1;
    }
    for (int i = 0; rc == 0 && i < nkeys; i++) {
        char *text = NULL;
        uint64_t revision = 0;
        /* the other kind's placements, and the drains, are skipped */
        if (keys[i][0] != (tables ? 't' : 'c'))
            continue;
        if (clog_kv_get_rev(kv, keys[i], &text, &revision, err, errlen) != 0) {
            rc = -1;
            break;
        }
        if (!text)   /* dropped meanwhile */
            continue;
        rc = map_parse(text, &(*maps)[*n], err, errlen);
        free(text);
        if (rc == 0)
            (*maps)[(*n)++].revision = revision;
    }
    clog_kv_keys_free(keys, nkeys);
    if (rc != 0) {
        shard_maps_release(*maps, *n);
        *maps = NULL;
        *n = 0;
    }
    return rc;
}

/* ---- nodes being drained ---- */

#define DRAINS_KEY "drains"

int shard_drains_get(clog_kv *kv, char ***nodes, int *n, uint64_t *revision,
                     char *err, size_t errlen)
{
    char *text = NULL;
    *nodes = NULL;
    *n = 0;
    if (clog_kv_get_rev(kv, DRAINS_KEY, &text, revision, err, errlen) != 0)
        return -1;
    if (!text)
        return 0;
    json_t *list = json_loads(text, 0, NULL);
    free(text);
    size_t count = json_array_size(list);
    int rc = 0;
    *nodes = calloc(count + 1, sizeof **nodes);
    for (size_t i = 0; *nodes && i < count; i++) {
        const char *node = json_string_value(json_array_get(list, i));
        if (!node || !((*nodes)[*n] = strdup(node))) {
            rc = -1;
            break;
        }
        (*n)++;
    }
    json_decref(list);
    if (!*nodes || rc != 0) {
        clog_kv_keys_free(*nodes, *n);
        *nodes = NULL;
        *n = 0;
        snprintf(err, errlen, "the placement bucket's list of nodes being "
                 "drained cannot be read");
        return -1;
    }
    return 0;
}

int shard_drains_put(clog_kv *kv, char *const *nodes, int n,
                     uint64_t revision, char *err, size_t errlen)
{
    json_t *list = json_array();
    for (int i = 0; list && i < n; i++)
        json_array_append_new(list, json_string(nodes[i]));
    char *dumped = list ? json_dumps(list, JSON_COMPACT) : NULL;
    json_decref(list);
    if (!dumped) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = revision == 0
                 ? clog_kv_create(kv, DRAINS_KEY, dumped, err, errlen)
                 : clog_kv_update(kv, DRAINS_KEY, dumped, revision, err,
                                  errlen);
    qv_json_free(dumped);
    return rc;
}

int shard_drains_has(char *const *nodes, int n, const char *node)
{
    for (int i = 0; i < n; i++)
        if (strcmp(nodes[i], node) == 0)
            return 1;
    return 0;
}

