#include "db/engine/store/pindex.h"

#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "db/core/error.h"
#include "db/core/filter.h"
#include "storage/keys.h"

#define ENTRY_MAX (8 + 1 + PINDEX_KEYWORD_MAX + 4)

/* ---- the catalog of indexes ---- */

int pindex_load(eng_db *db, MDB_txn *txn, uint32_t coll, pindex_set *out)
{
    MDB_cursor *cur;
    unsigned char prefix[KEY_COLL_LEN];
    key_put_u32(prefix, coll);
    out->n = 0;
    int rc = mdb_cursor_open(txn, st_dbi(db->env, ST_DB_PINDEX), &cur);
    if (rc != 0)
        return rc;
    MDB_val key = {sizeof prefix, prefix}, val;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
         rc == 0 && out->n < PINDEX_MAX;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        size_t flen = key.mv_size - KEY_COLL_LEN;
        if (key.mv_size <= KEY_COLL_LEN || memcmp(key.mv_data, prefix,
                                                  sizeof prefix))
            break;
        if (flen > QV_FIELD_MAX ||
            pindex_rec_decode(&val, &out->recs[out->n]) != 0) {
            rc = MDB_CORRUPTED;
            break;
        }
        memcpy(out->fields[out->n], (char *)key.mv_data + KEY_COLL_LEN, flen);
        out->fields[out->n][flen] = '\0';
        out->n++;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* ---- value encoding ---- */

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)v;
}

static size_t encode_int(int64_t v, unsigned char *out)
{
    put_u64(out, (uint64_t)v ^ (1ull << 63));
    return 8;
}

static size_t encode_float(double d, unsigned char *out)
{
    uint64_t bits;
    if (d == 0)
        d = 0;  /* -0.0 and 0.0 are one value */
    memcpy(&bits, &d, sizeof bits);
    bits = (bits >> 63) ? ~bits : bits | (1ull << 63);
    put_u64(out, bits);
    return 8;
}

/* The key bytes of v for an index of type; 0 when it cannot hold v. */
static size_t encode_value(uint32_t type, const json_t *v, unsigned char *out)
{
    if (type == QV_INDEX_KEYWORD) {
        size_t len = json_is_string(v) ? json_string_length(v) : SIZE_MAX;
        if (len > PINDEX_KEYWORD_MAX)
            return 0;
        memcpy(out, json_string_value(v), len);
        return len ? len : (size_t)-1;  /* "" is a value too */
    }
    if (!json_is_number(v))
        return 0;
    double d = json_number_value(v);
    if (type == QV_INDEX_FLOAT)
        return encode_float(d, out);
    if (json_is_integer(v))
        return encode_int(json_integer_value(v), out);
    if (d != floor(d) || d < -9.2e18 || d > 9.2e18)
        return 0;
    return encode_int((int64_t)d, out);
}

/* [coll][index][tag][value][iid] */
static size_t entry_key(unsigned char *k, uint32_t coll, uint32_t index,
                        int tag, const unsigned char *value, size_t len,
                        uint32_t iid)
{
    key_put_u32(k, coll);
    key_put_u32(k + 4, index);
    k[8] = (unsigned char)tag;
    if (len)
        memcpy(k + 9, value, len);
    key_put_u32(k + 9 + len, iid);
    return 9 + len + 4;
}

/* The entry of a payload's field for one index (its key in k). */
static size_t entry_for(const pindex_set *set, size_t i, uint32_t coll,
                        uint32_t iid, const json_t *payload, unsigned char *k)
{
    const json_t *v = payload ? filter_lookup(payload, set->fields[i]) : NULL;
    if (!v)
        return 0;  /* no field, no entry: it matches no lookup */
    unsigned char enc[PINDEX_KEYWORD_MAX];
    size_t len = encode_value(set->recs[i].type, v, enc);
    if (len == (size_t)-1)
        return entry_key(k, coll, set->recs[i].id, PENTRY_VALUE, enc, 0, iid);
    if (len == 0)
        return entry_key(k, coll, set->recs[i].id, PENTRY_RESIDUAL, NULL, 0, iid);
    return entry_key(k, coll, set->recs[i].id, PENTRY_VALUE, enc, len, iid);
}

int pindex_update(eng_db *db, MDB_txn *txn, uint32_t coll,
                  const pindex_set *set, uint32_t iid,
                  const json_t *old_payload, const json_t *new_payload)
{
    MDB_dbi dbi = st_dbi(db->env, ST_DB_PENTRIES);
    unsigned char k[ENTRY_MAX];
    MDB_val empty = {0, NULL};
    for (size_t i = 0; i < set->n; i++) {
        size_t len = entry_for(set, i, coll, iid, old_payload, k);
        if (len) {
            MDB_val key = {len, k};
            int rc = mdb_del(txn, dbi, &key, NULL);
            if (rc != 0 && rc != MDB_NOTFOUND)
                return rc;
        }
        len = entry_for(set, i, coll, iid, new_payload, k);
        if (len) {
            MDB_val key = {len, k};
            int rc = mdb_put(txn, dbi, &key, &empty, 0);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

int pindex_payload_of(const MDB_val *doc, json_t **out)
{
    MDB_val id, payload;
    *out = NULL;
    if (doc_record_split(doc, &id, &payload) != 0)
        return 0;
    return filter_payload(payload.mv_data, payload.mv_size, out);
}

/* ---- lookups ---- */

struct range {
    const unsigned char *lo, *hi;   /* NULL: unbounded */
    size_t lo_len, hi_len;
    int lo_open, hi_open;           /* exclusive bounds */
};

/* Bytewise, a shorter prefix first: the order of the encodings. */
static int cmp_bytes(const unsigned char *a, size_t alen,
                     const unsigned char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c ? c : (alen > blen) - (alen < blen);
}

/* Add the iids of the index's entries with tag (and, for values, within
 * the range) to out. */
static int scan_entries(eng_db *db, MDB_txn *txn, uint32_t coll,
                        uint32_t index, int tag, const struct range *r,
                        roaring_bitmap_t *out)
{
    MDB_cursor *cur;
    unsigned char start[ENTRY_MAX];
    size_t slen = 9;
    key_put_u32(start, coll);
    key_put_u32(start + 4, index);
    start[8] = (unsigned char)tag;
    if (r && r->lo) {
        memcpy(start + 9, r->lo, r->lo_len);
        slen += r->lo_len;
    }
    int rc = mdb_cursor_open(txn, st_dbi(db->env, ST_DB_PENTRIES), &cur);
    if (rc != 0)
        return rc;
    MDB_val key = {slen, start}, val;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        const unsigned char *v;
        size_t vlen;
        unsigned etag;
        uint32_t iid;
        if (pentry_key_decode(&key, &etag, &v, &vlen, &iid) != 0 ||
            memcmp(key.mv_data, start, PENTRY_PREFIX_LEN) != 0 ||
            etag != (unsigned)tag)
            break;
        if (r && r->lo && r->lo_open && !cmp_bytes(v, vlen, r->lo, r->lo_len))
            continue;
        if (r && r->hi) {
            int c = cmp_bytes(v, vlen, r->hi, r->hi_len);
            if (c > 0 || (c == 0 && r->hi_open))
                break;
        }
        roaring_bitmap_add(out, iid);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

struct plan_ctx {
    eng_db *db;
    MDB_txn *txn;
    uint32_t coll;
    const pindex_set *set;
    int failed;
};

/*
 * Lookups also say whether their set is exactly the matches (1) or a
 * superset (0). Equality with a value the index holds is exact: a
 * residual value (another type, a longer string, a fraction or a number
 * out of an int index's range) never equals it. A range is exact on a
 * float index with a numeric bound (its residuals are not numbers); on an
 * int index fractions, and on a keyword index long strings, may fall in a
 * range, so those include the residuals and are not exact.
 *
 * Filters compare numbers as doubles, which hold every integer only below
 * 2^53 in magnitude (INT_EXACT); beyond, neighbouring integers round to
 * one double, so there an int index's keys are widened by more than the
 * rounding (at most 512 below 2^63) and equality is not exact either.
 * INT_END bounds the int64 keys.
 */
#define INT_EXACT 9007199254740992.0   /* 2^53 */
#define INT_END 9223372036854775808.0  /* 2^63 */

/*
 * The key of an int index's range side for a numeric bound d: lower (the
 * integers whose double is >= d, or > d when *open) or upper. Returns 0
 * with the key in enc, 1 for no bound on that side, -1 when no integer
 * can be in the range.
 */
static int int_edge(double d, int lower, int *open, unsigned char *enc,
                    size_t *len)
{
    double edge = lower ? ceil(d) : floor(d);
    *open = *open && edge == d;
    *len = 0;
    if (fabs(edge) >= INT_EXACT) {
        edge += lower ? -2048 : 2048;
        *open = 0;
    }
    if (lower ? edge < -INT_END : edge >= INT_END)
        return 1;
    if (lower ? edge >= INT_END : edge < -INT_END)
        return -1;
    *len = encode_int((int64_t)edge, enc);
    return 0;
}

/* Entries equal to v, plus the residual documents. */
static roaring_bitmap_t *lookup_eq(struct plan_ctx *c, const pindex_rec *ix,
                                   const json_t *v, int *exact)
{
    roaring_bitmap_t *b = roaring_bitmap_create();
    unsigned char enc[PINDEX_KEYWORD_MAX], hi[8];
    size_t len = encode_value(ix->type, v, enc), hi_len;
    *exact = len != 0;
    if (ix->type == QV_INDEX_INT && json_is_number(v) &&
        fabs(json_number_value(v)) >= INT_EXACT) {
        /* the integers whose double may be v's */
        double d = json_number_value(v);
        int open = 0, lo_side = int_edge(d, 1, &open, enc, &len),
            hi_side = int_edge(d, 0, &open, hi, &hi_len);
        struct range r = {lo_side ? NULL : enc, hi_side ? NULL : hi, len,
                          hi_len, 0, 0};
        *exact = 0;
        if (lo_side >= 0 && hi_side >= 0 &&
            scan_entries(c->db, c->txn, c->coll, ix->id, PENTRY_VALUE, &r, b))
            c->failed = 1;
        goto residual;
    }
    if (len == (size_t)-1)
        len = 0;
    else if (len == 0)
        goto residual;  /* the index cannot hold v: only residuals can */
    struct range r = {enc, enc, len, len, 0, 0};
    if (scan_entries(c->db, c->txn, c->coll, ix->id, PENTRY_VALUE, &r, b))
        c->failed = 1;
    if (*exact)
        return b;  /* no residual can equal a value the index holds */
residual:
    if (scan_entries(c->db, c->txn, c->coll, ix->id, PENTRY_RESIDUAL, NULL, b))
        c->failed = 1;
    return b;
}

/* Entries within one bound op (a string bound on a numeric index, or a
 * number on a keyword index, leaves only the residuals). */
static roaring_bitmap_t *lookup_range(struct plan_ctx *c,
                                      const pindex_rec *ix, const char *op,
                                      const json_t *bound, int *exact)
{
    roaring_bitmap_t *b = roaring_bitmap_create();
    *exact = ix->type == QV_INDEX_FLOAT && json_is_number(bound);
    unsigned char enc[PINDEX_KEYWORD_MAX];
    const unsigned char *key = enc;   /* NULL: no bound on that side */
    int lower = op[1] == 'g', open = op[3] == '\0';
    size_t len;
    if (ix->type == QV_INDEX_INT && json_is_number(bound)) {
        int side = int_edge(json_number_value(bound), lower, &open, enc,
                            &len);
        if (side < 0)
            goto residual;
        if (side > 0)
            key = NULL;
    } else {
        len = encode_value(ix->type, bound, enc);
        if (len == (size_t)-1)
            len = 0;
        else if (len == 0)
            goto residual;
    }
    struct range r = {0};
    if (lower)
        r = (struct range){key, NULL, len, 0, open, 0};
    else
        r = (struct range){NULL, key, 0, len, 0, open};
    if (scan_entries(c->db, c->txn, c->coll, ix->id, PENTRY_VALUE, &r, b))
        c->failed = 1;
    if (*exact)
        return b;
residual:
    if (scan_entries(c->db, c->txn, c->coll, ix->id, PENTRY_RESIDUAL, NULL, b))
        c->failed = 1;
    return b;
}

/* AND b into *acc (b may be NULL: no narrowing, and then not exact). */
static void narrow(roaring_bitmap_t **acc, roaring_bitmap_t *b, int b_exact,
                   int *exact)
{
    *exact = *exact && b_exact && b;
    if (!b)
        return;
    if (!*acc) {
        *acc = b;
        return;
    }
    roaring_bitmap_and_inplace(*acc, b);
    roaring_bitmap_free(b);
}

static const pindex_rec *find_index(const pindex_set *set, const char *field)
{
    for (size_t i = 0; i < set->n; i++) {
        if (strcmp(set->fields[i], field) == 0)
            return &set->recs[i];
    }
    return NULL;
}

static roaring_bitmap_t *candidates_of_field(struct plan_ctx *c,
                                             const pindex_rec *ix,
                                             const json_t *cond, int *exact)
{
    if (!json_is_object(cond))
        return lookup_eq(c, ix, cond, exact);
    roaring_bitmap_t *acc = NULL;
    const char *op;
    json_t *arg;
    *exact = 1;
    json_object_foreach((json_t *)cond, op, arg) {
        roaring_bitmap_t *b = NULL;
        int b_exact = 0;
        if (!strcmp(op, "$eq")) {
            b = lookup_eq(c, ix, arg, &b_exact);
        } else if (!strcmp(op, "$in")) {
            size_t i;
            json_t *x;
            b = roaring_bitmap_create();
            b_exact = 1;
            json_array_foreach(arg, i, x) {
                int one_exact;
                roaring_bitmap_t *one = lookup_eq(c, ix, x, &one_exact);
                b_exact &= one_exact;
                roaring_bitmap_or_inplace(b, one);
                roaring_bitmap_free(one);
            }
        } else if (op[1] == 'g' || op[1] == 'l') {
            b = lookup_range(c, ix, op, arg, &b_exact);
        }  /* $ne, $nin, $exists: no narrowing */
        narrow(&acc, b, b_exact, exact);
    }
    return acc;
}

static roaring_bitmap_t *candidates_of(struct plan_ctx *c, const json_t *node,
                                       int *exact)
{
    roaring_bitmap_t *acc = NULL;
    const char *key;
    json_t *v;
    *exact = 1;
    json_object_foreach((json_t *)node, key, v) {
        roaring_bitmap_t *b = NULL;
        int b_exact = 0;
        if (!strcmp(key, "$and")) {
            size_t i;
            json_t *x;
            b_exact = 1;
            json_array_foreach(v, i, x) {
                int x_exact;
                roaring_bitmap_t *xb = candidates_of(c, x, &x_exact);
                narrow(&b, xb, x_exact, &b_exact);
            }
        } else if (!strcmp(key, "$or")) {
            size_t i;
            json_t *x;
            b = roaring_bitmap_create();
            b_exact = 1;
            json_array_foreach(v, i, x) {
                int x_exact;
                roaring_bitmap_t *one = candidates_of(c, x, &x_exact);
                if (!one) {  /* one branch unknown: the union is too */
                    roaring_bitmap_free(b);
                    b = NULL;
                    break;
                }
                b_exact &= x_exact;
                roaring_bitmap_or_inplace(b, one);
                roaring_bitmap_free(one);
            }
        } else if (key[0] != '$') {
            const pindex_rec *ix = find_index(c->set, key);
            if (ix)
                b = candidates_of_field(c, ix, v, &b_exact);
        }
        narrow(&acc, b, b_exact, exact);
    }
    return acc;
}

roaring_bitmap_t *pindex_candidates(eng_db *db, MDB_txn *txn, uint32_t coll,
                                    const pindex_set *set,
                                    const json_t *filter, int *exact)
{
    *exact = 0;
    if (set->n == 0)
        return NULL;
    struct plan_ctx c = {db, txn, coll, set, 0};
    roaring_bitmap_t *b = candidates_of(&c, filter, exact);
    if (c.failed && b) {  /* a lookup failed: fall back to every document */
        roaring_bitmap_free(b);
        b = NULL;
    }
    *exact = *exact && b;
    return b;
}

/* ---- verification ---- */

struct verify {
    eng_db *db;
    MDB_txn *txn;
    uint32_t coll;
    const pindex_set *set;
    unsigned problems;
    int rc;       /* ENOMEM: a payload could not be read, the check stops */
    char *err;
    size_t errlen;
};

static void verify_problem(struct verify *v, const char *what, uint32_t iid,
                           size_t index)
{
    if (v->problems++ == 0)
        snprintf(v->err, v->errlen, "index on '%s': %s (internal id %u)",
                 v->set->fields[index], what, iid);
}

/* The internal id and payload (release it) of a document a walk over
 * the docs records visits: 1 to go on with it; 0 when an earlier failure
 * (*rc) stopped the walk, the key is not a document's, or its payload
 * cannot be read (then *rc says why). */
static int walked_doc(int *rc, const MDB_val *key, const MDB_val *val,
                      uint32_t *iid, json_t **payload)
{
    if (*rc != 0 || doc_key_decode(key, NULL, iid) != 0)
        return 0;
    *rc = pindex_payload_of(val, payload);
    return *rc == 0;
}

/* Every document has the entries its payload calls for. */
static void verify_doc(void *arg, const MDB_val *key, const MDB_val *val)
{
    struct verify *v = arg;
    json_t *payload;
    uint32_t iid;
    if (!walked_doc(&v->rc, key, val, &iid, &payload))
        return;
    for (size_t i = 0; i < v->set->n; i++) {
        unsigned char k[ENTRY_MAX];
        size_t len = entry_for(v->set, i, v->coll, iid, payload, k);
        MDB_val ekey = {len, k}, eval;
        if (len && mdb_get(v->txn, st_dbi(v->db->env, ST_DB_PENTRIES), &ekey,
                           &eval) != 0)
            verify_problem(v, "a document's entry is missing", iid, i);
    }
    json_decref(payload);
}

/* Every entry belongs to a document whose payload calls for it. */
static void verify_entries(struct verify *v, size_t index)
{
    MDB_cursor *cur;
    unsigned char prefix[8], k[ENTRY_MAX], doc_key[KEY_DOC_LEN];
    key_put_u32(prefix, v->coll);
    key_put_u32(prefix + 4, v->set->recs[index].id);
    if (mdb_cursor_open(v->txn, st_dbi(v->db->env, ST_DB_PENTRIES), &cur))
        return;
    MDB_val key = {sizeof prefix, prefix}, val;
    for (int rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
         rc == 0 && v->rc == 0;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        const unsigned char *value;
        size_t vlen;
        unsigned tag;
        uint32_t iid;
        if (pentry_key_decode(&key, &tag, &value, &vlen, &iid) != 0 ||
            memcmp(key.mv_data, prefix, PENTRY_PREFIX_LEN))
            break;
        key_doc(doc_key, v->coll, iid);
        MDB_val dkey = {sizeof doc_key, doc_key}, doc;
        json_t *payload = NULL;
        if (mdb_get(v->txn, st_dbi(v->db->env, ST_DB_DOCS), &dkey, &doc) == 0)
            v->rc = pindex_payload_of(&doc, &payload);
        if (v->rc != 0)
            break;
        size_t len = payload ? entry_for(v->set, index, v->coll, iid, payload,
                                         k)
                             : 0;
        if (len != key.mv_size || memcmp(k, key.mv_data, len))
            verify_problem(v, "an entry no document calls for", iid, index);
        json_decref(payload);
    }
    mdb_cursor_close(cur);
}

int pindex_verify(eng_db *db, MDB_txn *txn, uint32_t coll,
                  unsigned *problems, char *err, size_t errlen)
{
    pindex_set set;
    *problems = 0;
    if (pindex_load(db, txn, coll, &set) != 0) {
        snprintf(err, errlen, "the index records cannot be read");
        *problems = 1;
        return 0;
    }
    struct verify v = {db, txn, coll, &set, 0, 0, err, errlen};
    if (set.n == 0)
        return 0;
    eng_walk_range(db, txn, ST_DB_DOCS, coll, verify_doc, &v);
    for (size_t i = 0; i < set.n && v.rc == 0; i++)
        verify_entries(&v, i);
    *problems = v.problems;
    return v.rc;
}

/* ---- creation and back-fill ---- */

/* Creating or dropping an index: change is the step, in the transaction
 * that read the collection's record and its indexes. */
struct index_ctx {
    eng_db *db;
    const char *collection, *field;
    qv_index_type type;           /* of a new index */
    int (*change)(struct index_ctx *c, MDB_txn *txn, const coll_rec *rec,
                  const pindex_set *set);
    qv_status status;
};

struct backfill {
    eng_db *db;
    MDB_txn *txn;
    uint32_t coll;
    pindex_set one;
    int rc;
};

static void backfill_doc(void *arg, const MDB_val *key, const MDB_val *val)
{
    struct backfill *b = arg;
    json_t *payload;
    uint32_t iid;
    if (!walked_doc(&b->rc, key, val, &iid, &payload))
        return;
    b->rc = pindex_update(b->db, b->txn, b->coll, &b->one, iid, NULL,
                          payload);
    json_decref(payload);
}

/* The key of the index record of field in collection coll: the
 * collection's id, then the field; k holds KEY_COLL_LEN + QV_FIELD_MAX
 * bytes. */
static MDB_val index_record_key(unsigned char *k, uint32_t coll,
                                const char *field)
{
    size_t flen = strlen(field);
    key_put_u32(k, coll);
    memcpy(k + KEY_COLL_LEN, field, flen);
    return (MDB_val){KEY_COLL_LEN + flen, k};
}

/* A collection's record and its indexes, for creating or dropping one;
 * ST_ABORT with *status set when the collection does not exist. */
static int collection_indexes(eng_db *db, MDB_txn *txn, const char *collection,
                              coll_rec *rec, pindex_set *set,
                              qv_status *status)
{
    *status = catalog_get(db, txn, collection, rec);
    if (*status != QV_OK)
        return ST_ABORT;
    return pindex_load(db, txn, rec->id, set);
}

static int index_txn(MDB_txn *txn, void *arg)
{
    struct index_ctx *c = arg;
    coll_rec rec;
    pindex_set set;
    int rc = collection_indexes(c->db, txn, c->collection, &rec, &set,
                                &c->status);
    return rc ? rc : c->change(c, txn, &rec, &set);
}

/* Add the index c->field of c->type to the collection and fill it. */
static int add_index(struct index_ctx *c, MDB_txn *txn, const coll_rec *rec,
                     const pindex_set *set)
{
    if (find_index(set, c->field)) {
        c->status = qv_fail(&c->db->base, QV_ERR_EXISTS, "collection '%s' "
                            "already has an index on '%s'", c->collection,
                            c->field);
        return ST_ABORT;
    }
    if (set->n == PINDEX_MAX) {
        c->status = qv_fail(&c->db->base, QV_ERR_LIMIT, "collection '%s' has "
                            "the most indexes it can (%d)", c->collection,
                            PINDEX_MAX);
        return ST_ABORT;
    }
    struct backfill b = {c->db, txn, rec->id, {.n = 1}, 0};
    snprintf(b.one.fields[0], sizeof b.one.fields[0], "%s", c->field);
    b.one.recs[0].type = c->type;
    int rc = eng_next_id(c->db, txn, META_NEXT_INDEX, &b.one.recs[0].id);
    unsigned char k[KEY_COLL_LEN + QV_FIELD_MAX];
    MDB_val key = index_record_key(k, rec->id, c->field),
            val = {sizeof(pindex_rec), &b.one.recs[0]};
    if (rc == 0)
        rc = mdb_put(txn, st_dbi(c->db->env, ST_DB_PINDEX), &key, &val, 0);
    if (rc == 0)
        rc = eng_walk_range(c->db, txn, ST_DB_DOCS, rec->id, backfill_doc, &b);
    return rc ? rc : b.rc;
}

qv_status pindex_create(qv_db *base, const char *collection, const char *field,
                        qv_index_type type)
{
    eng_db *db = (eng_db *)base;
    struct index_ctx c = {db, collection, field, type, add_index, QV_OK};
    return eng_write(db, index_txn, &c, &c.status, "creating an index");
}

/* Remove the index record of c->field and every entry of the index. */
static int remove_index(struct index_ctx *c, MDB_txn *txn,
                        const coll_rec *rec, const pindex_set *set)
{
    const pindex_rec *ix = find_index(set, c->field);
    if (!ix) {
        c->status = qv_fail(&c->db->base, QV_ERR_NOT_FOUND, "collection '%s' "
                            "has no index on '%s'", c->collection, c->field);
        return ST_ABORT;
    }
    unsigned char k[KEY_COLL_LEN + QV_FIELD_MAX], prefix[8];
    MDB_val key = index_record_key(k, rec->id, c->field);
    key_put_u32(prefix, rec->id);
    key_put_u32(prefix + 4, ix->id);
    int rc = st_delete_prefix(txn, st_dbi(c->db->env, ST_DB_PENTRIES), prefix,
                              sizeof prefix);
    if (rc == 0)
        rc = mdb_del(txn, st_dbi(c->db->env, ST_DB_PINDEX), &key, NULL);
    return rc;
}

qv_status pindex_drop(qv_db *base, const char *collection, const char *field)
{
    eng_db *db = (eng_db *)base;
    struct index_ctx c = {db, collection, field, 0, remove_index, QV_OK};
    return eng_write(db, index_txn, &c, &c.status, "dropping an index");
}

qv_status pindex_list(qv_db *base, const char *collection,
                      qv_index_info **out, size_t *count)
{
    eng_db *db = (eng_db *)base;
    MDB_txn *txn;
    coll_rec rec;
    qv_index_info *list = NULL;
    pindex_set *set = qv_malloc(sizeof *set);
    if (!set)
        return qv_fail(base, QV_ERR_NOMEM, "listing indexes: out of memory");
    qv_status st = eng_read_begin(db, &txn, "listing indexes");
    if (st == QV_OK) {
        int rc = collection_indexes(db, txn, collection, &rec, set, &st);
        if (rc != 0 && rc != ST_ABORT)
            st = eng_status(db, rc, "listing indexes");
        st_read_end(db->env, txn);
    }
    if (st == QV_OK && set->n > 0 &&
        !(list = qv_calloc(set->n, sizeof *list)))
        st = qv_fail(base, QV_ERR_NOMEM, "listing indexes: out of memory");
    for (size_t i = 0; st == QV_OK && i < set->n; i++) {
        memcpy(list[i].field, set->fields[i], sizeof list[i].field);
        list[i].type = (qv_index_type)set->recs[i].type;
    }
    if (st == QV_OK) {
        *out = list;
        *count = set->n;
    }
    qv_mem_free(set);
    return st;
}
