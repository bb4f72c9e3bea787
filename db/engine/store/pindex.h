/*
 * pindex.h - payload indexes: a field's values, ordered, per collection.
 *
 *   pindexes  [coll:4][field]                      -> pindex_rec
 *   pentries  [coll:4][index:4][tag:1][value][iid:4] -> (empty)
 *
 * (db/engine/store/records.h has both records and their decoders.)
 *
 * Values are encoded so that byte order is value order: keyword = the
 * string's bytes (up to PINDEX_KEYWORD_MAX), int = the int64 with its
 * sign bit flipped, big-endian; float = the double's order-preserving bit
 * pattern. A document whose field holds a value the index cannot encode
 * (another type, a longer string, a fraction for int) gets a residual
 * entry (tag PENTRY_RESIDUAL) so that lookups can still include it.
 *
 * Indexes only narrow candidates: every lookup answers a superset (its
 * matches plus the residual documents) on which the filter is evaluated,
 * so an index never changes what a search returns, only its cost.
 */
#ifndef QV_DB_ENGINE_STORE_PINDEX_H
#define QV_DB_ENGINE_STORE_PINDEX_H

#include <jansson.h>
#include <roaring/roaring.h>

#include "db/engine/store/txn.h"

#define PINDEX_KEYWORD_MAX 400
#define PINDEX_MAX QV_INDEXES_MAX

/* The indexes of a collection: fields[i] (NUL-terminated) and recs[i]. */
typedef struct pindex_set {
    size_t n;
    char fields[PINDEX_MAX][QV_FIELD_MAX + 1];
    pindex_rec recs[PINDEX_MAX];
} pindex_set;

int pindex_load(eng_db *db, MDB_txn *txn, uint32_t coll, pindex_set *out);

/*
 * Replace a document's entries: remove those of old_payload, add those of
 * new_payload (either may be NULL). Returns 0 or an LMDB code.
 */
int pindex_update(eng_db *db, MDB_txn *txn, uint32_t coll,
                  const pindex_set *set, uint32_t iid,
                  const json_t *old_payload, const json_t *new_payload);

/* A document's payload from its docs record value: *out NULL when it has
 * none (see filter_payload). Returns 0 or ENOMEM. */
int pindex_payload_of(const MDB_val *doc, json_t **out);

/*
 * Candidates for filter from the indexes: a new bitmap holding every
 * document that can match (a superset), or NULL when the indexes cannot
 * narrow it (then every document is a candidate). *exact is set when the
 * bitmap is exactly the matching documents, so that no payload needs to
 * be read.
 */
roaring_bitmap_t *pindex_candidates(eng_db *db, MDB_txn *txn, uint32_t coll,
                                    const pindex_set *set,
                                    const json_t *filter, int *exact);

/*
 * Check every payload index of the collection against its documents:
 * *problems found, the first described in err. Returns 0, or ENOMEM when
 * the check could not be finished.
 */
int pindex_verify(eng_db *db, MDB_txn *txn, uint32_t coll,
                  unsigned *problems, char *err, size_t errlen);

qv_status pindex_drop(qv_db *db, const char *collection, const char *field);
/* The indexes of a collection in field order (qv_list_indexes). */
qv_status pindex_list(qv_db *db, const char *collection,
                      qv_index_info **out, size_t *count);
qv_status pindex_create(qv_db *db, const char *collection, const char *field,
                        qv_index_type type);

#endif
