/*
 * bench_embed.c - `quiver bench embed`: the seed paper's comparison on
 * MovieLens. A factorization machine with a logistic output, whose
 * feature embeddings live in a Quiver table of the chosen method, is
 * trained through the public API (lookup, then update with the
 * gradients) on ml-latest-small: label rating >= 4; features user, movie,
 * its genres and its release year (from the title); a fixed-seed
 * 80/10/10 split. The test metrics are those of the epoch with the best
 * validation AUC. Then lookup throughput for batches of 4,096 ids,
 * against a plain in-memory gather of float rows in this program.
 */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/alloc.h"
#include "cli/bench.h"
#include "cli/cli.h"

#define MAX_FIELDS 24      /* features of one sample: user, movie, year,
                              genres */
#define LOOKUP_BATCH 4096

static const char embed_usage[] =
    "usage: quiver bench embed --data DIR --method M [--dim 16]\n"
    "       [--epochs 10] [--seed 1] [--lr 0.05] [--batch 1024]\n"
    "       [--optimizer adagrad|sgd] [--db DIR] [--json]\n";

struct embed_args {
    const char *data, *method, *db;
    unsigned dim, epochs, batch;
    uint64_t seed;
    float lr;
    int sgd, json;
};

typedef struct sample {
    uint32_t n;                 /* features */
    uint32_t f[MAX_FIELDS];     /* feature ids */
    uint8_t label;
} sample;

struct dataset {
    sample *s;
    size_t n;
    uint32_t features;
};

/* ---- MovieLens ---- */

/* A growing map from (kind, key) to dense feature ids. */
typedef struct fmap {
    uint64_t *keys;
    uint32_t *vals;
    size_t cap, n;
} fmap;

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static int fmap_grow(fmap *m)
{
    size_t cap = m->cap ? 2 * m->cap : 1024;
    uint64_t *keys = qv_malloc(cap * sizeof *keys);
    uint32_t *vals = qv_malloc(cap * sizeof *vals);
    if (!keys || !vals) {
        qv_mem_free(keys);
        qv_mem_free(vals);
        return -1;
    }
    memset(keys, 0xff, cap * sizeof *keys);
    for (size_t i = 0; i < m->cap; i++) {
        if (m->keys[i] == UINT64_MAX)
            continue;
        size_t j = mix(m->keys[i]) & (cap - 1);
        while (keys[j] != UINT64_MAX)
            j = (j + 1) & (cap - 1);
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    qv_mem_free(m->keys);
    qv_mem_free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    return 0;
}

/* The feature id of key, given the next one when new; UINT32_MAX: OOM. */
static uint32_t fmap_id(fmap *m, uint64_t key)
{
    if (2 * (m->n + 1) > m->cap && fmap_grow(m) != 0)
        return UINT32_MAX;
    size_t j = mix(key) & (m->cap - 1);
    while (m->keys[j] != UINT64_MAX && m->keys[j] != key)
        j = (j + 1) & (m->cap - 1);
    if (m->keys[j] == key)
        return m->vals[j];
    m->keys[j] = key;
    m->vals[j] = (uint32_t)m->n;
    return (uint32_t)m->n++;
}

static uint64_t fkey(unsigned kind, uint64_t v)
{
    return (uint64_t)kind << 56 | v;
}

/* A movie's year and genres, as feature ids. */
typedef struct movie {
    uint32_t nf;
    uint32_t f[MAX_FIELDS - 2];
} movie;

/* Split one CSV line into fields (quotes honoured), in place. */
static int csv_fields(char *line, char **field, int max)
{
    int n = 0;
    char *p = line;
    while (n < max) {
        char *out = p;
        field[n++] = p;
        int quoted = *p == '"';
        if (quoted)
            p++;
        while (*p && (quoted || (*p != ',' && *p != '\n' && *p != '\r'))) {
            if (quoted && *p == '"') {
                if (p[1] == '"') {
                    *out++ = '"';
                    p += 2;
                    continue;
                }
                quoted = 0;
                p++;
                continue;
            }
            *out++ = *p++;
        }
        int more = *p == ',';
        *out = '\0';
        if (!more)
            break;
        p++;
    }
    return n;
}

/* dir/name opened past its header line (its path in path), or NULL
 * with the reason in err. */
static FILE *open_csv(const char *dir, const char *name, char *path,
                      size_t pathlen, char *err, size_t errlen)
{
    char header[4096];
    snprintf(path, pathlen, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f || !fgets(header, sizeof header, f)) {
        snprintf(err, errlen, "cannot read %.400s", path);
        if (f)
            fclose(f);
        return NULL;
    }
    return f;
}

static int load_movies(const char *dir, fmap *fm, movie **movies,
                       uint32_t *max_id, char *err, size_t errlen)
{
    char path[4096], line[4096];
    FILE *f = open_csv(dir, "movies.csv", path, sizeof path, err, errlen);
    if (!f)
        return -1;
    size_t cap = 0;
    *movies = NULL;
    *max_id = 0;
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        char *field[3];
        if (csv_fields(line, field, 3) != 3)
            continue;
        uint32_t id = (uint32_t)atol(field[0]);
        if (id >= cap) {
            size_t ncap = cap ? cap : 1024;
            while (ncap <= id)
                ncap *= 2;
            movie *m = qv_realloc(*movies, ncap * sizeof *m);
            if (!m) {
                rc = -1;
                break;
            }
            memset(m + cap, 0, (ncap - cap) * sizeof *m);
            *movies = m;
            cap = ncap;
        }
        *max_id = id > *max_id ? id : *max_id;
        movie *m = &(*movies)[id];
        /* the year: the last "(YYYY)" of the title */
        char *open = strrchr(field[1], '(');
        int year = open && strlen(open) >= 6 ? atoi(open + 1) : 0;
        if (year >= 1800 && year <= 2100)
            m->f[m->nf++] = fmap_id(fm, fkey(3, (uint64_t)year));
        for (char *g = strtok(field[2], "|"); g && m->nf < MAX_FIELDS - 2;
             g = strtok(NULL, "|")) {
            uint64_t h = XXH64(g, strlen(g), 0);
            m->f[m->nf++] = fmap_id(fm, fkey(4, h & 0xffffffffffffull));
        }
    }
    fclose(f);
    if (rc != 0)
        snprintf(err, errlen, "out of memory reading %.400s", path);
    return rc;
}

static int load_ratings(const char *dir, fmap *fm, const movie *movies,
                        uint32_t max_movie, struct dataset *ds, char *err,
                        size_t errlen)
{
    char path[4096], line[512];
    FILE *f = open_csv(dir, "ratings.csv", path, sizeof path, err, errlen);
    if (!f)
        return -1;
    size_t cap = 0;
    while (fgets(line, sizeof line, f)) {
        char *field[4];
        if (csv_fields(line, field, 4) != 4)
            continue;
        uint32_t user = (uint32_t)atol(field[0]);
        uint32_t mid = (uint32_t)atol(field[1]);
        if (ds->n == cap) {
            cap = cap ? 2 * cap : 65536;
            sample *s = qv_realloc(ds->s, cap * sizeof *s);
            if (!s) {
                fclose(f);
                snprintf(err, errlen, "out of memory reading %.400s", path);
                return -1;
            }
            ds->s = s;
        }
        sample *s = &ds->s[ds->n++];
        s->n = 0;
        s->f[s->n++] = fmap_id(fm, fkey(1, user));
        s->f[s->n++] = fmap_id(fm, fkey(2, mid));
        if (mid <= max_movie)
            for (uint32_t i = 0; i < movies[mid].nf; i++)
                s->f[s->n++] = movies[mid].f[i];
        s->label = atof(field[2]) >= 4.0;
    }
    fclose(f);
    ds->features = (uint32_t)fm->n;
    return 0;
}

/* ---- the model ---- */

struct fm {
    qv_db *db;
    unsigned dim;
    float bias;          /* the global bias, trained here */
    float lr;
    /* batch buffers */
    uint64_t *ids;
    float *emb, *lin, *gemb, *glin;
};

static float sigmoid(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

/* Forward (and with train, backward and the updates) over samples. */
static int fm_batch(struct fm *m, const sample *s, size_t n, int train,
                    float *scores)
{
    size_t k = 0, d = m->dim;
    for (size_t i = 0; i < n; i++)
        for (uint32_t j = 0; j < s[i].n; j++)
            m->ids[k++] = s[i].f[j];
    if (qv_table_lookup(m->db, "emb", m->ids, k, (uint32_t)d, m->emb) !=
            QV_OK ||
        qv_table_lookup(m->db, "lin", m->ids, k, 1, m->lin) != QV_OK)
        return -1;
    float sum[1024];
    double gbias = 0;
    k = 0;
    for (size_t i = 0; i < n; i++) {
        float y = m->bias, sq = 0;
        memset(sum, 0, d * sizeof *sum);
        for (uint32_t j = 0; j < s[i].n; j++) {
            const float *v = m->emb + (k + j) * d;
            y += m->lin[k + j];
            for (size_t t = 0; t < d; t++) {
                sum[t] += v[t];
                sq += v[t] * v[t];
            }
        }
        for (size_t t = 0; t < d; t++)
            y += 0.5f * sum[t] * sum[t];
        y -= 0.5f * sq;
        scores[i] = sigmoid(y);
        float g = scores[i] - (float)s[i].label;   /* d logloss / d y */
        gbias += g;
        for (uint32_t j = 0; train && j < s[i].n; j++) {
            const float *v = m->emb + (k + j) * d;
            float *gv = m->gemb + (k + j) * d;
            for (size_t t = 0; t < d; t++)
                gv[t] = g * (sum[t] - v[t]) / (float)n;
            m->glin[k + j] = g / (float)n;
        }
        k += s[i].n;
    }
    if (!train)
        return 0;
    m->bias -= m->lr * (float)(gbias / (double)n);
    if (qv_table_update(m->db, "emb", m->ids, k, (uint32_t)d, m->gemb) !=
            QV_OK ||
        qv_table_update(m->db, "lin", m->ids, k, 1, m->glin) != QV_OK)
        return -1;
    return 0;
}

struct scored {
    float p;
    uint8_t label;
};

static int by_score(const void *a, const void *b)
{
    float x = ((const struct scored *)a)->p, y = ((const struct scored *)b)->p;
    return (x > y) - (x < y);
}

/* AUC (ties counted half) and mean logloss of predictions. */
static void metrics(struct scored *sc, size_t n, double *auc, double *loss)
{
    double ll = 0;
    for (size_t i = 0; i < n; i++) {
        double p = sc[i].p < 1e-7 ? 1e-7 : sc[i].p > 1 - 1e-7 ? 1 - 1e-7
                                                              : sc[i].p;
        ll -= sc[i].label ? log(p) : log(1 - p);
    }
    *loss = ll / (double)n;
    qsort(sc, n, sizeof *sc, by_score);
    double rank_sum = 0, pos = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && sc[j].p == sc[i].p)
            j++;
        double avg = (double)(i + j + 1) / 2.0;   /* ranks from 1 */
        for (size_t t = i; t < j; t++)
            if (sc[t].label) {
                rank_sum += avg;
                pos++;
            }
        i = j;
    }
    double neg = (double)n - pos;
    *auc = (rank_sum - pos * (pos + 1) / 2) / (pos * neg);
}

static int evaluate(struct fm *m, const sample *s, size_t n, size_t batch,
                    double *auc, double *loss)
{
    struct scored *sc = qv_malloc(n * sizeof *sc);
    float *scores = qv_malloc(batch * sizeof *scores);
    int rc = sc && scores ? 0 : -1;
    for (size_t i = 0; i < n && rc == 0; i += batch) {
        size_t b = n - i < batch ? n - i : batch;
        rc = fm_batch(m, s + i, b, 0, scores);
        for (size_t j = 0; j < b && rc == 0; j++)
            sc[i + j] = (struct scored){scores[j], s[i + j].label};
    }
    if (rc == 0)
        metrics(sc, n, auc, loss);
    qv_mem_free(sc);
    qv_mem_free(scores);
    return rc;
}

/* Lookups per second of batches of LOOKUP_BATCH random features, and of
 * a plain gather of float rows from memory. */
static void lookup_speed(qv_db *db, uint32_t features, unsigned dim,
                         uint64_t seed, double *table_rate,
                         double *gather_rate)
{
    uint64_t *ids = qv_malloc(LOOKUP_BATCH * sizeof *ids);
    float *out = qv_malloc((size_t)LOOKUP_BATCH * dim * sizeof *out);
    float *plain = qv_malloc((size_t)features * dim * sizeof *plain);
    *table_rate = *gather_rate = 0;
    if (!ids || !out || !plain)
        goto out;
    uint64_t s = seed;
    for (size_t i = 0; i < (size_t)features * dim; i++)
        plain[i] = (float)(mix(++s) >> 40) / 16777216.0f;
    for (int i = 0; i < LOOKUP_BATCH; i++)
        ids[i] = mix(++s) % features;
    double best = 1e30;
    for (int pass = 0; pass < 5; pass++) {
        double t0 = cli_now();
        for (int r = 0; r < 20; r++)
            qv_table_lookup(db, "emb", ids, LOOKUP_BATCH, dim, out);
        double t = (cli_now() - t0) / 20;
        best = t < best ? t : best;
    }
    *table_rate = LOOKUP_BATCH / best;
    best = 1e30;
    volatile float sink = 0;
    for (int pass = 0; pass < 5; pass++) {
        double t0 = cli_now();
        for (int r = 0; r < 20; r++) {
            for (int i = 0; i < LOOKUP_BATCH; i++)
                memcpy(out + (size_t)i * dim, plain + ids[i] * dim,
                       dim * sizeof *out);
            sink += out[r];
        }
        double t = (cli_now() - t0) / 20;
        best = t < best ? t : best;
    }
    (void)sink;
    *gather_rate = LOOKUP_BATCH / best;
out:
    qv_mem_free(ids);
    qv_mem_free(out);
    qv_mem_free(plain);
}

static int parse_embed_args(int argc, char **argv, struct embed_args *a)
{
    enum { O_EPOCHS = 256, O_LR, O_BATCH, O_OPT };
    static const struct option opts[] = {
        {"data", required_argument, 0, 'D'},
        {"method", required_argument, 0, 'm'},
        {"dim", required_argument, 0, 'd'},
        {"epochs", required_argument, 0, O_EPOCHS},
        {"seed", required_argument, 0, 's'},
        {"lr", required_argument, 0, O_LR},
        {"batch", required_argument, 0, O_BATCH},
        {"optimizer", required_argument, 0, O_OPT},
        {"db", required_argument, 0, 'b'},
        {"json", no_argument, 0, 'j'},
        {0, 0, 0, 0}};
    *a = (struct embed_args){.dim = 16, .epochs = 10, .batch = 1024,
                             .seed = 1, .lr = 0.05f};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'D': a->data = optarg; break;
        case 'm': a->method = optarg; break;
        case 'd': a->dim = (unsigned)atoi(optarg); break;
        case 's': a->seed = strtoull(optarg, NULL, 10); break;
        case 'b': a->db = optarg; break;
        case 'j': a->json = 1; break;
        case O_EPOCHS: a->epochs = (unsigned)atoi(optarg); break;
        case O_LR: a->lr = (float)atof(optarg); break;
        case O_BATCH: a->batch = (unsigned)atoi(optarg); break;
        case O_OPT:
            if (strcmp(optarg, "sgd") && strcmp(optarg, "adagrad")) {
                fputs(embed_usage, stderr);
                return -1;
            }
            a->sgd = !strcmp(optarg, "sgd");
            break;
        default:
            fputs(embed_usage, stderr);
            return -1;
        }
    }
    if (!a->data || !a->method || optind != argc || a->dim == 0 ||
        a->dim > 1024 || a->epochs == 0 || a->batch == 0 ||
        a->batch > 65536 || !(a->lr > 0)) {
        fputs(embed_usage, stderr);
        return -1;
    }
    return 0;
}

/* Shuffle with the seed, then 80/10/10. */
static void shuffle(struct dataset *ds, uint64_t seed)
{
    uint64_t s = seed;
    for (size_t i = ds->n; i > 1; i--) {
        size_t j = mix(++s) % i;
        sample t = ds->s[i - 1];
        ds->s[i - 1] = ds->s[j];
        ds->s[j] = t;
    }
}

static int make_tables(qv_db *db, const struct embed_args *a,
                       uint32_t features, char *err, size_t errlen)
{
    qv_table_config emb = {.rows = features, .dim = a->dim,
                           .method = a->method,
                           .optimizer = a->sgd ? QV_OPTIMIZER_SGD
                                               : QV_OPTIMIZER_ADAGRAD,
                           .learning_rate = a->lr, .init = 0.01f,
                           .seed = a->seed};
    qv_table_config lin = emb;
    lin.dim = 1;
    lin.method = "full";
    if (qv_table_create(db, "emb", &emb) != QV_OK ||
        qv_table_create(db, "lin", &lin) != QV_OK) {
        snprintf(err, errlen, "%s", qv_errmsg(db));
        return -1;
    }
    return 0;
}

int bench_embed(int argc, char **argv)
{
    struct embed_args a;
    struct dataset ds = {0};
    fmap fm = {0};
    movie *movies = NULL;
    struct fm m = {0};
    char *tmpdir = NULL, err[512] = "";
    float *scores = NULL;
    int rc = 1;
    uint32_t max_movie;
    if (parse_embed_args(argc, argv, &a) != 0)
        return 2;
    if (load_movies(a.data, &fm, &movies, &max_movie, err, sizeof err) != 0 ||
        load_ratings(a.data, &fm, movies, max_movie, &ds, err,
                     sizeof err) != 0)
        goto cleanup;
    shuffle(&ds, a.seed);
    size_t ntrain = ds.n * 8 / 10, nval = ds.n / 10;
    const sample *val = ds.s + ntrain, *test = ds.s + ntrain + nval;
    size_t ntest = ds.n - ntrain - nval;
    if (!a.db && !(tmpdir = bench_temp_dir())) {
        snprintf(err, sizeof err, "cannot make a temporary directory");
        goto cleanup;
    }
    /* a training job's store: asynchronous commits */
    qv_open_options oo = {.flags = QV_OPEN_NOSYNC};
    if (qv_open(a.db ? a.db : tmpdir, &oo, &m.db) != QV_OK) {
        snprintf(err, sizeof err, "%s", qv_errmsg(m.db));
        goto cleanup;
    }
    if (make_tables(m.db, &a, ds.features, err, sizeof err) != 0)
        goto cleanup;
    m.dim = a.dim;
    m.lr = a.lr;
    size_t most = (size_t)a.batch * MAX_FIELDS;
    m.ids = qv_malloc(most * sizeof *m.ids);
    m.emb = qv_malloc(most * a.dim * sizeof *m.emb);
    m.gemb = qv_malloc(most * a.dim * sizeof *m.gemb);
    m.lin = qv_malloc(most * sizeof *m.lin);
    m.glin = qv_malloc(most * sizeof *m.glin);
    scores = qv_malloc(a.batch * sizeof *scores);
    if (!m.ids || !m.emb || !m.gemb || !m.lin || !m.glin || !scores) {
        snprintf(err, sizeof err, "out of memory");
        goto cleanup;
    }
    double best_val = -1, test_auc = 0, test_loss = 0, train_s = 0;
    unsigned best_epoch = 0;
    for (unsigned e = 1; e <= a.epochs; e++) {
        double t0 = cli_now();
        for (size_t i = 0; i < ntrain; i += a.batch) {
            size_t b = ntrain - i < a.batch ? ntrain - i : a.batch;
            if (fm_batch(&m, ds.s + i, b, 1, scores) != 0) {
                snprintf(err, sizeof err, "training: %s", qv_errmsg(m.db));
                goto cleanup;
            }
        }
        train_s += cli_now() - t0;
        double vauc, vloss, tauc, tloss;
        if (evaluate(&m, val, nval, a.batch, &vauc, &vloss) != 0 ||
            evaluate(&m, test, ntest, a.batch, &tauc, &tloss) != 0) {
            snprintf(err, sizeof err, "evaluating: %s", qv_errmsg(m.db));
            goto cleanup;
        }
        if (!a.json)
            printf("epoch %u: validation AUC %.4f logloss %.4f\n", e, vauc,
                   vloss);
        if (vauc > best_val) {
            best_val = vauc;
            best_epoch = e;
            test_auc = tauc;
            test_loss = tloss;
        }
    }
    qv_table_info info;
    if (qv_table_describe(m.db, "emb", &info) != QV_OK) {
        snprintf(err, sizeof err, "%s", qv_errmsg(m.db));
        goto cleanup;
    }
    double table_rate, gather_rate;
    lookup_speed(m.db, ds.features, a.dim, a.seed, &table_rate,
                 &gather_rate);
    json_t *o = json_pack(
        "{s:s, s:f, s:f, s:f, s:I, s:I, s:f, s:f, s:f, s:f, s:i, s:i, s:I, "
        "s:I}",
        "method", info.method, "ratio", info.ratio, "test_auc", test_auc,
        "logloss", test_loss, "param_bytes", (json_int_t)info.param_bytes,
        "optimizer_bytes", (json_int_t)info.optimizer_bytes, "train_s",
        train_s, "lookups_per_s", table_rate, "gather_per_s", gather_rate,
        "lookup_vs_gather", table_rate / gather_rate, "dim", (int)a.dim,
        "best_epoch", (int)best_epoch, "features", (json_int_t)ds.features,
        "samples", (json_int_t)ds.n);
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER |
                                   JSON_REAL_PRECISION(6));
    if (a.json)
        puts(text ? text : "{\"error\":\"out of memory for the result\"}");
    else
        printf("%s: ratio %.2f, test AUC %.4f, logloss %.4f (epoch %u), "
               "%llu parameter bytes, train %.1f s, %.3g lookups/s (%.2f of "
               "a plain gather)\n", info.method, info.ratio, test_auc,
               test_loss, best_epoch, (unsigned long long)info.param_bytes,
               train_s, table_rate, table_rate / gather_rate);
    free(text);
    json_decref(o);
    rc = 0;
cleanup:
    if (rc != 0)
        fprintf(stderr, "quiver bench embed: %s\n", err);
    qv_close(m.db);
    if (tmpdir) {
        bench_remove_dir(tmpdir);
        free(tmpdir);
    }
    qv_mem_free(m.ids);
    qv_mem_free(m.emb);
    qv_mem_free(m.gemb);
    qv_mem_free(m.lin);
    qv_mem_free(m.glin);
    qv_mem_free(scores);
    qv_mem_free(ds.s);
    qv_mem_free(movies);
    qv_mem_free(fm.keys);
    qv_mem_free(fm.vals);
    return rc;
}
