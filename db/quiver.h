/*
 * quiver.h - the public API of Quiver, a persistent vector and document
 * database.
 *
 * This header is the contract. Anything not declared here is private.
 *
 * Conventions
 * - Every function returns a qv_status; QV_OK is 0. Results come back
 *   through out-parameters, which are left untouched on error, with two
 *   exceptions: qv_open sets *out and qv_check sets *report to NULL
 *   before anything else, and qv_check hands its report back with
 *   QV_ERR_CORRUPT too (the one error that comes with a result).
 * - After a failed call, qv_errmsg(db) says what exactly was wrong.
 * - Under each call, "Returns" lists the statuses it returns and when,
 *   as lmdb.h does. Besides those, every call on a handle returns
 *   QV_ERR_INVALID for a NULL handle or a NULL pointer it needs; a call
 *   that reads the database can return QV_ERR_NOMEM (out of memory),
 *   QV_ERR_IO (the operating system refused a read), QV_ERR_CORRUPT (a
 *   stored record fails its checks) and QV_ERR_INTERNAL (a bug); a call
 *   that writes can also return QV_ERR_FULL (the disk is full; nothing
 *   of the write was stored). Every call on a remote handle can also
 *   return QV_ERR_CONNECTION (it could not reconnect, or the connection
 *   broke during the call), QV_ERR_TIMEOUT (no answer within
 *   timeout_ms), QV_ERR_PROTOCOL (the server's answer is malformed),
 *   QV_ERR_UNAUTHENTICATED (the server wants a valid token) and
 *   QV_ERR_BUSY (the server is at its connection limit); the lists do
 *   not repeat these. A remote handle returns the same statuses and
 *   messages as an embedded one for everything else.
 * - Every object the library returns is one allocation, owned by the
 *   caller, and released with qv_free(). qv_free(NULL) and qv_close(NULL)
 *   are harmless no-ops.
 * - Strings passed in are NUL-terminated and copied when kept; the library
 *   never holds on to caller memory after a call returns.
 * - Bad input of any kind is refused with a status and a message, and
 *   writes nothing.
 * - Structs grow without breaking programs built against an earlier
 *   header (libquiver is also a shared library). The structs a caller
 *   fills in (qv_open_options, qv_collection_config, qv_search_options,
 *   qv_table_config) and those the library fills (qv_collection_info,
 *   qv_table_info, qv_index_info) end in reserved words, QV_RESERVED of
 *   them less those that fields have taken since (shards and replicas
 *   took the first of qv_collection_config's and qv_collection_info's,
 *   partial the first of qv_search_options'). A
 *   later version gives those words meaning (an option whose 0 keeps
 *   today's behaviour, a new figure) and never changes a struct's size
 *   or moves a field, so a program built against this header runs
 *   unchanged against a later library, and arrays of these structs keep
 *   their stride. Zero-initialise every struct you pass in (`= {0}` or a
 *   designated initializer): a reserved word that is not 0 is refused
 *   with QV_ERR_INVALID. When the words run out, new fields come with a
 *   new call taking a new struct. The other structs (qv_doc, qv_record,
 *   qv_hit, qv_batch_hits, qv_page) never change. qv_hits, which only
 *   the library fills, grew once at its end (missing_count and missing,
 *   for partial results): a program built against an earlier
 *   header reads a single search's hits unchanged, but steps through
 *   qv_batch_hits.results with the old size and must be rebuilt.
 *
 * Threads: a qv_db handle may be shared by any number of threads; calls on
 * it are safe to make concurrently. Readers never block writers and see a
 * consistent snapshot; writes are serialized. A remote handle has one
 * connection and runs its threads' calls on it one at a time: open one
 * handle per thread for parallel requests.
 *
 * Processes: several processes may open the same directory at once (an
 * application beside a server); each sees the others' commits.
 */
#ifndef QUIVER_H
#define QUIVER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The one source of Quiver's version: qv_version(), `quiver --version`,
 * the shared library's name and SONAME (libquiver.so.MAJOR) and
 * quiver.pc take it from here. */
#define QV_VERSION "0.1.0"

/* What the shared library exports: the calls declared here and nothing
 * else (it is built with -fvisibility=hidden). */
#if defined(__GNUC__) && __GNUC__ >= 4
#define QV_API __attribute__((visibility("default")))
#else
#define QV_API
#endif

/* The reserved words at the end of the option and info structs (see
 * "Structs grow" above). */
#define QV_RESERVED 8

/* A field that takes a reserved word starts where the word started,
 * aligned as it was: a 32-bit field must not slip into the padding before
 * the word, which a program built against an earlier header may have
 * left unset (C11's _Alignas, C++11's alignas). */
#ifdef __cplusplus
#define QV_IN_RESERVED_WORD alignas(uint64_t)
#else
#define QV_IN_RESERVED_WORD _Alignas(uint64_t)
#endif

/* The library's version (QV_VERSION of the library that runs, which may
 * differ from the header a program was built with). Never NULL. */
QV_API const char *qv_version(void);

/* Limits. Inputs beyond them are refused with QV_ERR_INVALID. */
#define QV_ID_MAX        255          /* bytes of a document id (min 1) */
#define QV_NAME_MAX      64           /* bytes of a collection name */
#define QV_DIM_MAX       16384        /* dimension of a collection */
#define QV_PAYLOAD_MAX   (1u << 20)   /* bytes of a payload's JSON text */
#define QV_FILTER_MAX    (1u << 20)   /* bytes of a filter's JSON text */
#define QV_K_MAX         10000        /* hits a search may ask for */
#define QV_M_MAX         128          /* HNSW neighbours per node (min 2) */
#define QV_EF_MAX        10000        /* ef and ef_construction */
#define QV_RERANK_MAX    10000        /* candidates a search re-ranks */
#define QV_CODEC_NAME_MAX 24          /* bytes of a codec's name, with NUL */
#define QV_TRAIN_MIN_MOST  10000000    /* train_min's bound */
#define QV_SHARDS_MAX    256          /* shards of a sharded collection */
#define QV_REPLICAS_MAX  16           /* copies of each of its shards */
#define QV_BATCH_MAX     1000000      /* queries in one batch search */
#define QV_SQNORM_MAX    1e36         /* squared norm of a vector in an l2
                                         or ip collection, and of a query
                                         of one (see "Which vectors") */
#define QV_F16_MAX       65504.0f     /* magnitude of a component stored
                                         with codec f16 (l2 and ip) */

/* Sizes a database reaches rather than inputs: a write beyond them is
 * refused with QV_ERR_LIMIT and changes nothing. */
#define QV_INDEXES_MAX   32           /* payload indexes of a collection */
#define QV_DOCS_MAX      4294967295u  /* documents of a collection */

typedef enum qv_status {
    QV_OK = 0,
    QV_ERR_INVALID,      /* malformed argument: id, name, payload, k, ... */
    QV_ERR_DIMENSION,    /* vector length differs from the collection's */
    QV_ERR_NOT_FOUND,    /* no such collection or document */
    QV_ERR_EXISTS,       /* the collection already exists */
    QV_ERR_NOMEM,        /* out of memory */
    QV_ERR_IO,           /* the operating system refused a read or write */
    QV_ERR_FULL,         /* disk full: the database could not grow */
    QV_ERR_CORRUPT,      /* stored data fails its checks */
    QV_ERR_READONLY,     /* a write on a handle opened read-only */
    QV_ERR_UNSUPPORTED,  /* not supported by this build or transport */
    QV_ERR_INTERNAL,     /* a bug: please report it with the message */
    QV_ERR_CONNECTION,   /* remote: cannot connect, or the connection broke */
    QV_ERR_TIMEOUT,      /* remote: no answer in time */
    QV_ERR_PROTOCOL,     /* remote: a malformed frame or message */
    QV_ERR_UNAUTHENTICATED, /* remote: the server wants a valid token */
    QV_ERR_BUSY,         /* remote: the server is at its connection limit */
    QV_ERR_LIMIT,        /* a fixed limit of the database was reached (the
                            indexes of a collection, its documents); the
                            same request fails again until something is
                            removed, whatever the disk */
    QV_ERR_IN_USE        /* another process has the database open and the
                            call needs it alone (qv_compact) */
} qv_status;
/* Later versions append statuses after the last one above and never
 * renumber one; treat a status you do not know as an error
 * (qv_strerror names it "unknown status"). */

/* A fixed English sentence for a status; never NULL (for a status this
 * version does not know: "unknown status"). */
QV_API const char *qv_strerror(qv_status status);

/* The status's name, as "QV_ERR_INVALID" without the prefix: "INVALID";
 * "OK" for QV_OK; "UNKNOWN" for a status this version does not know.
 * Used by the CLI's JSON output. Never NULL. */
QV_API const char *qv_status_name(qv_status status);

typedef struct qv_db qv_db;

/* Flags for qv_open_options.flags. */
#define QV_OPEN_READONLY  0x1u  /* refuse every write with QV_ERR_READONLY */
#define QV_OPEN_NOSYNC    0x2u  /* async commits: a write survives a crash of
                                   the process (kill -9) but the last ones
                                   may be lost on power failure */
#define QV_OPEN_PREAD     0x4u  /* read full vectors for re-ranking with
                                   pread, not io_uring (which is used when
                                   the kernel offers it) */
#define QV_OPEN_VECTORS_IN_MEMORY 0x8u  /* graphs copy their vectors into
                                   memory when they load, as before
                                   Quiver read large l2/ip vectors in
                                   place: opening takes longer (seconds
                                   at a million) and the vectors are
                                   held twice, for the fastest walk
                                   (docs/ARCHITECTURE.md, "Vectors in
                                   place"). The first handle of a
                                   process to load a collection's graph
                                   decides for every handle on it. */

typedef struct qv_open_options {
    uint32_t flags;         /* QV_OPEN_* */
    uint64_t map_size;      /* initial map size in bytes; 0 = 256 MiB.
                               The map grows by itself while the disk has
                               room, so this is only a starting point. */
    uint32_t threads;       /* threads for building the index during large
                               upserts; 0 = one per online CPU */
    const char *token;      /* remote: the server's token, if it has one */
    uint32_t timeout_ms;    /* remote: connect and reply timeout; 0 = 30 s */
    const char *tls_ca_file;  /* qvs://: PEM file of the CAs whose
                                 certificates are trusted; NULL = the
                                 system's trust store */
    uint64_t reserved[QV_RESERVED];   /* 0 */
} qv_open_options;

/*
 * Open a database. uri is a directory path (created if missing, with its
 * parent required to exist), or "qv://host:port" for a database served by
 * quiverd (port 7411, quiverd's default, when ":port" is left out): the same calls, statuses and messages over TCP, or
 * "qvs://host:port" for one served with TLS (quiverd --tls-cert): the
 * server's certificate must chain to a trusted CA (tls_ca_file) and name
 * host, else QV_ERR_CONNECTION saying why; the token is sent only inside
 * TLS. A remote handle
 * connects at once (QV_ERR_CONNECTION if it cannot) and reconnects by
 * itself after a broken connection, and before a call when the server
 * closed the idle connection (it restarted, or timed it out). The nodes of a cluster may be named
 * together, "qv://h1:7411,h2:7411" (at most 16): the handle uses the
 * first that answers and moves to the next when its node fails, asking a
 * read again there, never a write: a write that met the failure returns
 * QV_ERR_CONNECTION saying it may or may not have been applied.
 * opts may be NULL for defaults.
 * A database of a newer on-disk format than this version reads is
 * refused with QV_ERR_UNSUPPORTED, and left untouched; older formats open
 * (docs/FORMAT.md).
 *
 * On success *out is a handle to release with qv_close(). On failure *out
 * is set to NULL and the message is available from qv_errmsg(NULL).
 *
 * Returns:
 *   QV_ERR_INVALID     - out is NULL; uri is empty, or a qv:// or qvs://
 *                        URI without a host and a numeric port; an
 *                        unknown flag or a reserved word not 0 in opts;
 *                        tls_ca_file cannot be read; the directory is
 *                        open in this process with the other sync mode
 *                        (QV_OPEN_NOSYNC)
 *   QV_ERR_IO          - the directory cannot be created or opened (a
 *                        missing parent, permissions, not a directory)
 *   QV_ERR_CORRUPT     - the directory's data file is not a database,
 *                        is shorter than its last page, or is missing
 *                        beside its lock file
 *   QV_ERR_UNSUPPORTED - the database was written by a newer Quiver in a
 *                        format this library does not know
 *   QV_ERR_NOMEM       - out of memory
 *   and for a remote URI QV_ERR_CONNECTION (no server there, a TLS
 *   handshake or certificate that fails), QV_ERR_TIMEOUT,
 *   QV_ERR_UNAUTHENTICATED (a token missing or wrong), QV_ERR_BUSY.
 */
QV_API qv_status qv_open(const char *uri, const qv_open_options *opts,
                         qv_db **out);

/* Close the handle, after which it must not be used. NULL is a no-op. */
QV_API void qv_close(qv_db *db);

/*
 * The message of the last failed call made on db by the calling thread,
 * naming what was wrong ("document 3: vector[17] is NaN"). "" when that
 * call succeeded. qv_errmsg(NULL) gives the message of the last failed
 * qv_open in this thread. The string is valid until the next call on any
 * handle in this thread.
 */
QV_API const char *qv_errmsg(const qv_db *db);

/* Release any object returned by this API. NULL is a no-op. */
QV_API void qv_free(void *object);

/* ---- Collections -------------------------------------------------------- */

typedef enum qv_metric {
    QV_METRIC_L2 = 0,     /* distance = squared Euclidean distance */
    QV_METRIC_IP = 1,     /* distance = 1 - dot(a, b) */
    QV_METRIC_COSINE = 2  /* distance = 1 - cos(a, b); zero vectors refused */
} qv_metric;

/*
 * Which vectors: a collection accepts the vectors, and answers the
 * queries, whose every distance Quiver computes in float32 is finite.
 * Every component must be finite, and then per metric:
 *
 * - l2 and ip: the squared norm |v|^2, summed in double, is at most
 *   QV_SQNORM_MAX (1e36: a norm of 1e18, every component at most 1e18 in
 *   size). For two such vectors |a - b|^2 <= 4e36 and |a.b| <= 1e36, and
 *   so is every partial sum of the float kernels, far below FLT_MAX
 *   (3.4e38); the margin also covers the codecs' approximations.
 * - cosine: any vector that is not all zeros, whatever its magnitude
 *   (components near FLT_MAX, subnormal ones): vectors are brought to unit
 *   length in double precision before they are compared.
 * - codec f16 in an l2 or ip collection: every component of a stored
 *   vector is at most QV_F16_MAX (65504, the largest half) in size, so
 *   that its code holds no infinity. Queries are not encoded, so the
 *   bound above is theirs; cosine vectors are encoded unit length.
 *
 * Other vectors are refused with QV_ERR_INVALID and a message naming the
 * bound and the value ("document 3: vector's squared norm 2e+40 exceeds
 * 1e+36, the limit for metric l2"); qv_search and qv_search_batch refuse
 * such queries the same way. So every hit's distance is finite, and no
 * document is lost to a distance that overflowed or came out NaN.
 *
 * l2 distances are float32: two vectors closer than about 1e-19 (a
 * squared distance below the smallest float, 1.4e-45) measure 0 apart.
 */

/* "l2", "ip", "cosine"; NULL for an unknown value. */
QV_API const char *qv_metric_name(qv_metric metric);
/* Parse a metric name into *out.
 * Returns:
 *   QV_ERR_INVALID - name or out is NULL, or name is no metric's */
QV_API qv_status qv_metric_parse(const char *name, qv_metric *out);

/*
 * Every collection has an HNSW index (Malkov and Yashunin), kept in the
 * database beside the documents and changed in the same transactions.
 */
typedef struct qv_collection_config {
    uint32_t dim;             /* 1 .. QV_DIM_MAX */
    qv_metric metric;
    uint32_t M;               /* HNSW neighbours per node, 2 .. QV_M_MAX
                                 (level 0 keeps 2M); 0 = 16 */
    uint32_t ef_construction; /* beam width while inserting, 1 ..
                                 QV_EF_MAX; 0 = 200 */
    /* How the index keeps vectors in memory (docs/CODECS.md): NULL or
     * "none" (float32), "f16", "sq8", "pq:M" (M divides dim), "bin",
     * "prune:K". With a codec the graph is walked over compact codes and
     * the best candidates are re-ranked with the full vectors, read from
     * disk. */
    const char *codec;
    uint32_t train_min;       /* documents at which a codec that learns
                                 from the data (sq8, pq, bin) is trained;
                                 until then searches are exact. 0 = the
                                 codec's default (1,000; pq 10,000);
                                 at most QV_TRAIN_MIN_MOST, for pq at
                                 least 256 (its centroids) */
    /* A sharded collection (docs/CLUSTER.md), which only a cluster node
     * (quiverd --cluster) makes: the embedded engine and a quiverd
     * without --cluster refuse shards other than 0 with
     * QV_ERR_UNSUPPORTED. */
    QV_IN_RESERVED_WORD
    uint32_t shards;          /* 0 = an ordinary collection (the default);
                                 1 .. QV_SHARDS_MAX: split into that many
                                 shards across the cluster's nodes */
    uint32_t replicas;        /* copies of each shard, 0 = 1, at most
                                 QV_REPLICAS_MAX; only with shards (not 0
                                 when shards is 0) */
    uint64_t reserved[QV_RESERVED - 1];   /* 0 */
} qv_collection_config;

typedef struct qv_collection_info {
    char name[QV_NAME_MAX + 1];
    uint32_t dim;
    qv_metric metric;
    uint64_t count;           /* documents */
    uint32_t M;
    uint32_t ef_construction;
    uint64_t disk_bytes;      /* bytes of its records in the database file
                                 (keys and values, before page overhead);
                                 0 in qv_list_collections */
    uint64_t memory_bytes;    /* bytes its index holds in memory in the
                                 process that serves it (0 when not loaded) */
    char codec[QV_CODEC_NAME_MAX];  /* "none", "sq8", "pq:98", ... */
    int codec_trained;        /* the codec is trained and the graph built
                                 (always 1 for none, f16 and prune) */
    uint32_t train_min;       /* documents that trigger training */
    uint32_t code_bytes;      /* bytes of one vector in memory */
    /* A sharded collection on a cluster node: its shards and replicas
     * (qv_collection_config); 0 otherwise. */
    QV_IN_RESERVED_WORD
    uint32_t shards;
    uint32_t replicas;
    uint64_t reserved[QV_RESERVED - 1];   /* 0 in this version */
} qv_collection_info;

/*
 * Create a collection. Collection names are 1..QV_NAME_MAX bytes of
 * [A-Za-z0-9_.-] that start with a letter, digit or underscore.
 *
 * config->shards 0 (the default) makes an ordinary collection, held
 * whole by this database (on a cluster, by every node). shards 1 ..
 * QV_SHARDS_MAX asks for a sharded collection: split into that many
 * shards across a cluster's nodes, each shard held by config->replicas
 * nodes (0 = 1, at most QV_REPLICAS_MAX). Only a cluster node (quiverd
 * --cluster) makes one; replicas without shards is refused. Every call
 * on a collection works on a sharded one too, answered across its shards
 * (docs/CLUSTER.md "Shards"): an upsert is one write per shard, not one
 * transaction; a search's explain lists each shard's.
 *
 * Returns:
 *   QV_ERR_INVALID     - name is not a valid name; config is NULL, or a
 *                        value in it is out of its range (dim, metric, M,
 *                        ef_construction, codec, train_min, shards,
 *                        replicas, reserved), or replicas is not 0 while
 *                        shards is 0 (the checks of
 *                        qv_collection_config_check, with its messages)
 *   QV_ERR_READONLY    - the handle was opened read-only
 *   QV_ERR_UNSUPPORTED - shards is not 0 and the database is not a
 *                        cluster node (an embedded handle, or a quiverd
 *                        without --cluster): nothing is created
 *   QV_ERR_EXISTS      - a collection of that name exists
 *   and for a sharded create, QV_ERR_INVALID when replicas is more than
 *   the cluster's live nodes or the name starts with "_shard." (the
 *   shards' own collections), QV_ERR_CONNECTION when the node cannot
 *   reach NATS
 */
QV_API qv_status qv_create_collection(qv_db *db, const char *name,
                                      const qv_collection_config *config);

/*
 * Check config as qv_create_collection would, with no name and creating
 * nothing: every value and its range, the codec against dim ("pq:M"
 * where M divides dim), train_min's bounds for the codec, the reserved
 * words. shards and replicas are checked only against their ranges (and
 * replicas against shards 0), never against what the database is: a
 * config that asks for shards passes here on any handle. Needs no
 * stored data, so a remote handle answers it itself, without asking the
 * server, and a read-only handle may call it.
 *
 * Returns:
 *   QV_ERR_INVALID - config is NULL, or a value in it is wrong; the
 *                    message is the one qv_create_collection gives for
 *                    the same config
 */
QV_API qv_status qv_collection_config_check(
    qv_db *db, const qv_collection_config *config);

/*
 * Remove a collection, every document in it, its index and its payload
 * indexes, in one transaction.
 *
 * Returns:
 *   QV_ERR_INVALID   - name is not a valid name
 *   QV_ERR_READONLY  - the handle was opened read-only
 *   QV_ERR_NOT_FOUND - there is no such collection
 */
QV_API qv_status qv_drop_collection(qv_db *db, const char *name);

/*
 * Fill *info, which the caller owns, for one collection.
 *
 * Returns:
 *   QV_ERR_INVALID   - name is not a valid name
 *   QV_ERR_NOT_FOUND - there is no such collection
 */
QV_API qv_status qv_describe_collection(qv_db *db, const char *name,
                                        qv_collection_info *info);

/*
 * All collections in name order: *out is an array of *count entries, one
 * allocation to release with qv_free() (NULL when there are none).
 *
 * Returns only the statuses of every call (see Conventions).
 */
QV_API qv_status qv_list_collections(qv_db *db, qv_collection_info **out,
                                     size_t *count);

/* ---- Documents ---------------------------------------------------------- */

typedef struct qv_doc {
    const char *id;        /* 1..QV_ID_MAX bytes, NUL-terminated */
    const float *vector;   /* dim finite floats, within the metric's
                              bound ("Which vectors") */
    uint32_t dim;          /* must equal the collection's dimension */
    const char *payload;   /* a JSON object as text, or NULL for none;
                              at most QV_PAYLOAD_MAX bytes, no duplicate
                              keys. Stored in compact form. */
} qv_doc;

/*
 * Insert or replace n documents (n >= 1) in one transaction: either all
 * of them are stored or, on any error, none is. Within one batch a later
 * document with the same id replaces an earlier one. The message of a
 * refused batch names the index of the first bad document.
 *
 * Returns:
 *   QV_ERR_INVALID   - collection is not a valid name; docs is NULL or n
 *                      is 0; a document's id, vector (NULL, a component
 *                      not finite, outside the metric's bound: "Which
 *                      vectors") or payload (not a JSON object, too long,
 *                      a duplicate key) is bad
 *   QV_ERR_DIMENSION - a document's dim is 0 or differs from the
 *                      collection's
 *   QV_ERR_READONLY  - the handle was opened read-only
 *   QV_ERR_NOT_FOUND - there is no such collection
 *   QV_ERR_LIMIT     - the collection would hold more than QV_DOCS_MAX
 *                      documents
 */
QV_API qv_status qv_upsert(qv_db *db, const char *collection,
                           const qv_doc *docs, size_t n);

typedef struct qv_record {
    char *id;              /* NUL-terminated */
    float *vector;         /* dim floats */
    uint32_t dim;
    char *payload;         /* compact JSON object text, or NULL */
} qv_record;

/*
 * Fetch one document. *out is one allocation to release with qv_free().
 *
 * Returns:
 *   QV_ERR_INVALID   - collection is not a valid name, or id not a valid id
 *   QV_ERR_NOT_FOUND - there is no such collection, or no document id in it
 */
QV_API qv_status qv_get(qv_db *db, const char *collection, const char *id,
                        qv_record **out);

/*
 * Delete one document; the graph is repaired and its space reused.
 *
 * Returns:
 *   QV_ERR_INVALID   - collection is not a valid name, or id not a valid id
 *   QV_ERR_READONLY  - the handle was opened read-only
 *   QV_ERR_NOT_FOUND - there is no such collection, or no document id in it
 */
QV_API qv_status qv_delete(qv_db *db, const char *collection, const char *id);

/* ---- Search ------------------------------------------------------------- */

typedef struct qv_search_options {
    uint32_t k;            /* 1 .. QV_K_MAX hits wanted */
    uint32_t ef;           /* HNSW beam width, 0 .. QV_EF_MAX; 0 = 64.
                              A beam narrower than k is widened to k. */
    int exact;             /* non-zero: brute force over every document
                              instead of the index (exact, slower) */
    uint32_t threads;      /* qv_search_batch only: 0 = one per CPU */
    int with_payload;      /* non-zero: each hit carries its payload */
    const char *filter;    /* NULL, or a JSON filter on payload fields,
                              at most QV_FILTER_MAX bytes
                              (docs/FILTERS.md): only matching documents
                              are hits, and k come back whenever at least
                              k documents match */
    int explain;           /* qv_search: hits->explain describes the plan */
    uint32_t rerank;       /* collections with a codec: candidates re-scored
                              with their full vectors, k .. QV_RERANK_MAX
                              (widened to k); 0 = 4 x k */
    int no_rerank;         /* non-zero: return code distances, read no
                              full vector */
    /* A sharded collection on a cluster node (docs/CLUSTER.md "Shards"):
     * non-zero answers with the shards that answered when some shard
     * has no replica that answered, naming the others in
     * qv_hits.missing; 0 fails the search then. No effect elsewhere. */
    QV_IN_RESERVED_WORD
    int partial;
    uint64_t reserved[QV_RESERVED - 1];   /* 0 */
} qv_search_options;

typedef struct qv_hit {
    const char *id;        /* points into the same allocation */
    float distance;        /* per the collection's metric, finite; smaller
                              is nearer */
    const char *payload;   /* with_payload: the JSON text, or NULL when the
                              document has none; else NULL */
} qv_hit;

typedef struct qv_hits {
    size_t count;          /* min(k, documents that match: the
                              collection's, or the filter's) */
    qv_hit *hits;          /* nearest first; equal distances by id */
    const char *explain;   /* with options->explain: a JSON object {plan,
                              estimated_matches, matches, distances,
                              widenings}; else NULL */
    /* With options->partial on a sharded collection: the shards no
     * replica answered for, ascending (points into the same
     * allocation); the hits are those of the other shards. Else 0 and
     * NULL. */
    size_t missing_count;
    const uint32_t *missing;
} qv_hits;

/*
 * The k nearest documents to query: approximate through the HNSW index
 * (recall grows with ef), or exact with options->exact. The hits are
 * documents of one consistent snapshot of the database, taken when the
 * call starts. *out is one allocation to release with qv_free().
 *
 * Returns:
 *   QV_ERR_INVALID   - collection is not a valid name; query is NULL, has
 *                      a component that is not finite or lies outside
 *                      the metric's bound ("Which vectors"); options is
 *                      out of range (k, ef, rerank, a reserved word) or
 *                      its filter is malformed (docs/FILTERS.md)
 *   QV_ERR_DIMENSION - dim is 0 or differs from the collection's
 *   QV_ERR_NOT_FOUND - there is no such collection
 *   and for a sharded collection on a cluster node, QV_ERR_CONNECTION
 *   (naming the shard) when a shard has no replica that answered: with
 *   options->partial only when no shard at all answered, else QV_OK
 *   with the hits of the shards that answered and the others in
 *   (*out)->missing. Any other failure of a shard fails the search,
 *   partial or not. partial changes nothing on any other collection.
 */
QV_API qv_status qv_search(qv_db *db, const char *collection,
                           const float *query, uint32_t dim,
                           const qv_search_options *options, qv_hits **out);

typedef struct qv_batch_hits {
    size_t count;          /* queries */
    qv_hits *results;      /* results[i] answers query i */
} qv_batch_hits;

/*
 * nq queries (nq * dim floats, row after row) in one call, spread over
 * options->threads threads, all against one snapshot. *out is one
 * allocation to release with qv_free(). A bad query fails the whole
 * batch, its message naming it ("query 2: ..."). With options->partial
 * a shard that has no replica that answered is missing for the whole
 * batch: every results[i] names the same missing shards.
 *
 * Returns: as qv_search, and
 *   QV_ERR_INVALID   - nq is 0 or above QV_BATCH_MAX
 */
QV_API qv_status qv_search_batch(qv_db *db, const char *collection,
                                 const float *queries, size_t nq, uint32_t dim,
                                 const qv_search_options *options,
                                 qv_batch_hits **out);

#define QV_FIELD_MAX 255

typedef enum qv_index_type {
    QV_INDEX_KEYWORD = 0,   /* strings: equality, $in, ranges */
    QV_INDEX_INT = 1,       /* integers: equality, $in, ranges */
    QV_INDEX_FLOAT = 2      /* numbers: equality, $in, ranges */
} qv_index_type;

/*
 * Index a payload field (a dotted path, 1 .. QV_FIELD_MAX bytes) of a
 * collection, filling it from the documents already there. Indexes make
 * filtered searches and counts cheaper; they never change their results:
 * values the index cannot hold (another type, a string over 400 bytes, a
 * fraction in an int index) are still found.
 *
 * Returns:
 *   QV_ERR_INVALID   - collection is not a valid name; field is empty,
 *                      longer than QV_FIELD_MAX, not UTF-8, starts with
 *                      '$' or '.' or ends with '.'; type is unknown
 *   QV_ERR_READONLY  - the handle was opened read-only
 *   QV_ERR_NOT_FOUND - there is no such collection
 *   QV_ERR_EXISTS    - field is indexed already
 *   QV_ERR_LIMIT     - the collection has QV_INDEXES_MAX indexes
 */
QV_API qv_status qv_create_index(qv_db *db, const char *collection,
                                 const char *field, qv_index_type type);

/*
 * Remove the index on field and all its entries (filters find the same,
 * reading payloads instead).
 *
 * Returns:
 *   QV_ERR_INVALID   - as qv_create_index
 *   QV_ERR_READONLY  - the handle was opened read-only
 *   QV_ERR_NOT_FOUND - there is no such collection, or no index on field
 */
QV_API qv_status qv_drop_index(qv_db *db, const char *collection,
                               const char *field);

typedef struct qv_index_info {
    char field[QV_FIELD_MAX + 1];  /* the dotted path, NUL-terminated */
    qv_index_type type;
    uint64_t reserved[QV_RESERVED];   /* 0 in this version */
} qv_index_info;

/*
 * The payload indexes of a collection in field order (bytewise): *out is
 * an array of *count entries, one allocation to release with qv_free()
 * (NULL when the collection has none).
 *
 * Returns:
 *   QV_ERR_INVALID   - collection is not a valid name
 *   QV_ERR_NOT_FOUND - there is no such collection
 */
QV_API qv_status qv_list_indexes(qv_db *db, const char *collection,
                                 qv_index_info **out, size_t *count);

/*
 * *count = the documents of the collection that match filter (a JSON
 * filter, docs/FILTERS.md; NULL: all of them).
 *
 * Returns:
 *   QV_ERR_INVALID   - collection is not a valid name, or filter is
 *                      malformed
 *   QV_ERR_NOT_FOUND - there is no such collection
 */
QV_API qv_status qv_count(qv_db *db, const char *collection,
                          const char *filter, uint64_t *count);

/* ---- Scanning, backup, stats ---------------------------------------- */

typedef struct qv_page {
    size_t count;
    qv_record *records;    /* in external-id order (bytewise) */
    const char *next;      /* pass as `after` for the next page; NULL when
                              this page is the last */
} qv_page;

/*
 * Up to limit (1 .. 10,000) documents whose id comes after `after` (NULL:
 * from the first), in id order, from one snapshot. Page through a whole
 * collection by passing page->next back until it is NULL. *out is one
 * allocation to release with qv_free().
 *
 * Returns:
 *   QV_ERR_INVALID   - collection is not a valid name; after is not a
 *                      valid id; limit is 0 or above 10,000
 *   QV_ERR_NOT_FOUND - there is no such collection
 */
QV_API qv_status qv_scan(qv_db *db, const char *collection, const char *after,
                         uint32_t limit, qv_page **out);

/*
 * qv_scan of the documents that match filter (docs/FILTERS.md; NULL: all).
 * A page holds up to limit matches; page->next may be set when no further
 * match follows (the next page is then empty).
 *
 * Returns: as qv_scan, and
 *   QV_ERR_INVALID   - filter is malformed
 */
QV_API qv_status qv_scan_where(qv_db *db, const char *collection,
                               const char *filter, const char *after,
                               uint32_t limit, qv_page **out);

/*
 * Delete every document that matches filter, in one transaction;
 * *deleted = how many.
 *
 * Returns:
 *   QV_ERR_INVALID   - collection is not a valid name; filter is NULL or
 *                      malformed
 *   QV_ERR_READONLY  - the handle was opened read-only
 *   QV_ERR_NOT_FOUND - there is no such collection
 */
QV_API qv_status qv_delete_where(qv_db *db, const char *collection,
                                 const char *filter, uint64_t *deleted);

/*
 * Write a consistent, compacted copy of the whole database into directory
 * dir (created if missing; it must not hold a database already), while the
 * database stays open for reads and writes. The copy opens as a normal
 * database. On a remote handle dir is not a path but the name of a new
 * entry in the directory the server's operator named with
 * `quiverd --backup-dir` (1..QV_NAME_MAX letters, digits, '_', '-', '.',
 * not starting with '.'). A read-only handle may back up.
 *
 * Returns:
 *   QV_ERR_INVALID     - dir is NULL or empty; remote: not such a name
 *   QV_ERR_EXISTS      - dir (remote: the entry) holds a database already
 *   QV_ERR_IO          - dir cannot be created, or the copy not written
 *   QV_ERR_FULL        - the disk of dir is full
 *   QV_ERR_UNSUPPORTED - remote: the server was started without
 *                        --backup-dir
 */
QV_API qv_status qv_backup(qv_db *db, const char *dir);

/*
 * Verify every invariant of the database: each collection's id map,
 * documents, vectors, free ids and graph records agree with each other and
 * with its count, Quiver's own records pass their checksums, and each
 * index, loaded afresh, is a valid HNSW graph with every node reachable.
 * *report (release with qv_free) lists the problems, one a line, and
 * ends with a summary line; it is set with QV_OK and with QV_ERR_CORRUPT,
 * and NULL after any other status (the check could not run).
 *
 * Returns:
 *   QV_ERR_CORRUPT - the check ran and found problems (the message names
 *                    the first); *report lists them
 */
QV_API qv_status qv_check(qv_db *db, char **report);

/*
 * Give the space of deleted documents back to the file system: the
 * database file is rewritten compacted and swapped in. It needs the
 * database to itself (on a remote handle, the server's process does the
 * work). Calls in this process wait for it. It takes as long as a backup.
 *
 * Returns:
 *   QV_ERR_READONLY - the handle was opened read-only
 *   QV_ERR_IN_USE   - another process has the database open
 */
QV_API qv_status qv_compact(qv_db *db);

/*
 * Train the collection's codec again on a sample of its vectors and
 * re-encode every vector (the graph is kept). A collection whose codec
 * is not trained yet is trained now, if it holds enough vectors (pq
 * 256, sq8 and bin 1).
 *
 * Returns:
 *   QV_ERR_INVALID   - collection is not a valid name; its codec learns
 *                      nothing (none, f16, prune); it holds fewer
 *                      vectors than its codec needs
 *   QV_ERR_READONLY  - the handle was opened read-only
 *   QV_ERR_NOT_FOUND - there is no such collection
 */
QV_API qv_status qv_train(qv_db *db, const char *collection);

/*
 * Database-wide figures as a JSON object (collections, documents,
 * file_bytes, map_bytes, page_bytes, ...). *json is a string to release
 * with qv_free().
 *
 * Returns only the statuses of every call (see Conventions).
 */
QV_API qv_status qv_stats(qv_db *db, char **json);

/*
 * Threads that build the index during large upserts on this handle
 * (0 = one per CPU).
 *
 * Returns:
 *   QV_ERR_INVALID     - threads is above 1024
 *   QV_ERR_UNSUPPORTED - a remote handle (quiverd --threads sets it for
 *                        the server)
 */
QV_API qv_status qv_set_threads(qv_db *db, uint32_t threads);

/* ---- Clusters (docs/CLUSTER.md) ---------------------------------------- */

/*
 * A handle on a node of a cluster reads what that node has applied of the
 * write log. Each write's answer carries its sequence in the log, a write
 * token; a remote handle keeps the largest it has seen and sends it with
 * every request, which the node then answers only once it has applied
 * that far (read-your-writes within the handle, also after it moves to
 * another node). A node that cannot catch up within 30 s answers
 * QV_ERR_TIMEOUT.
 *
 * qv_write_token: *token = the handle's write token (0: none yet, or an
 * embedded handle, which always reads its own database).
 * qv_read_after: later requests on this handle wait until their node has
 * applied the write of token (for a token another handle wrote with).
 */
QV_API qv_status qv_write_token(qv_db *db, uint64_t *token);
QV_API qv_status qv_read_after(qv_db *db, uint64_t token);

/*
 * The cluster as the handle's node sees it, a JSON object (*json, release
 * with qv_free): "node" (its name), "stream" {"name", "last_seq",
 * "replicas"}, "nodes" [{"node", "listen", "db_id", "applied",
 * "lag_entries", "lag_seconds", "seen_seconds_ago"}...] of the live nodes,
 * "sharded" [{"name", "serial", "version", "shards", "replicas",
 * "placement": [[node, ...] per shard], "copying": [nodes whose new
 * replica has not caught up], "moving": [{"shard", "from", "to",
 * "caught_up"}] the moves under way}...] the placement of every sharded
 * collection, "sharded_tables" the same of every sharded table (whose
 * replicas do not move yet), "draining" [nodes] the nodes being drained
 * (qv_cluster_drain), "coordinator" (the node placing replicas, "" for
 * none),
 * "last_error" (the node's last failure reading the log, "" for none).
 *
 * Returns:
 *   QV_ERR_UNSUPPORTED - an embedded handle, or a server that is not a
 *                        cluster node
 *   QV_ERR_CONNECTION  - the node cannot reach NATS
 */
QV_API qv_status qv_cluster_status(qv_db *db, char **json);

/*
 * Drain a cluster node before it is stopped (cancel 0), or stop draining
 * it (cancel 1). Draining moves the node's replicas of sharded
 * collections to other live nodes, one at a time: a new replica is made
 * first and replaces the node's once it has caught up, so no shard has
 * fewer replicas that have caught up meanwhile. The call returns once the
 * drain is recorded; qv_cluster_status shows it under "draining" and the
 * moves under "moving", and the node may be stopped once no placement
 * names it. A drained node takes no replicas until the drain is
 * cancelled; once it has left the cluster, the drain is forgotten. A node
 * already as asked is QV_OK.
 *
 * Returns:
 *   QV_ERR_INVALID     - node is NULL, empty or longer than 63 bytes; a
 *                        shard of the node would find no other live node
 *                        not being drained that lacks it (the message
 *                        names the shard), or the node holds replicas
 *                        of a sharded table (whose shards do not move
 *                        yet): nothing changes
 *   QV_ERR_NOT_FOUND   - no live node has that name and no placement
 *                        names it
 *   QV_ERR_UNSUPPORTED - as qv_cluster_status
 *   QV_ERR_CONNECTION  - the node cannot reach NATS
 *   QV_ERR_BUSY        - other drains kept changing the list of nodes
 *                        being drained while this one was checked: try
 *                        again
 */
QV_API qv_status qv_cluster_drain(qv_db *db, const char *node, int cancel);

/* ---- Log positions ------------------------------------------------------ */

/*
 * A replica that applies an ordered log of writes (Quiver's cluster does;
 * so may an application feeding Quiver from its own journal or a message
 * queue) must know after a crash where it stopped, and that answer must
 * agree with the data. A position is a named 64-bit value stored in the
 * database; qv_position_with_next_write stores it in the very transaction
 * of a write, so after a crash either both the write and the position are
 * there or neither is. Names are 1 to QV_NAME_MAX bytes of
 * [A-Za-z0-9_.:/-]. Embedded handles only.
 */

/* The position whose value (nonzero) marks a database as a cluster
 * node's replica of a write log (docs/CLUSTER.md): writes to it belong
 * to the log, so quiverd without --cluster and the shell refuse them. */
#define QV_POSITION_CLUSTER "cluster"

/*
 * *value = the position stored under name, 0 if none was.
 *
 * Returns:
 *   QV_ERR_INVALID     - name is not a valid position name
 *   QV_ERR_UNSUPPORTED - a remote handle
 */
QV_API qv_status qv_position_get(qv_db *db, const char *name, uint64_t *value);

/*
 * Store value under name now, in a transaction of its own (for a log
 * entry whose write was refused, so stored nothing). Clears what
 * qv_position_with_next_write staged on this handle in this thread.
 *
 * Returns:
 *   QV_ERR_INVALID     - name is not a valid position name
 *   QV_ERR_READONLY    - the handle was opened read-only
 *   QV_ERR_UNSUPPORTED - a remote handle
 */
QV_API qv_status qv_position_put(qv_db *db, const char *name, uint64_t value);

/*
 * Stage value under name for the next write transaction this thread
 * runs on db (the transaction of an upsert, delete, delete where, create
 * or drop of a collection or index, train, or a table call that writes):
 * it stores the position beside its own changes, or, when it fails,
 * neither. That transaction spends the stage either way; a call refused
 * before it reaches the database (bad arguments) leaves it, a later
 * stage replaces an unspent one, and closing the handle drops it. So a
 * replica applies entry n as: stage n; make the entry's call; if the
 * call failed, or succeeded without a transaction (nothing to change),
 * qv_position_put n, which also clears the stage; qv_position_get tells
 * which.
 *
 * Returns:
 *   QV_ERR_INVALID     - name is not a valid position name
 *   QV_ERR_READONLY    - the handle was opened read-only
 *   QV_ERR_UNSUPPORTED - a remote handle
 */
QV_API qv_status qv_position_with_next_write(qv_db *db, const char *name,
                                             uint64_t value);

/* ---- Embedding tables (docs/EMBEDDINGS.md) ------------------------------ */

/*
 * A learnable embedding table: dense float rows for 64-bit feature ids,
 * stored compressed by one of the methods of the seed paper, looked up and
 * trained (one optimizer step per update call) in the database.
 */
typedef enum qv_optimizer {
    QV_OPTIMIZER_SGD = 0,
    QV_OPTIMIZER_ADAGRAD = 1   /* row-wise: one accumulator per stored row */
} qv_optimizer;

#define QV_TABLE_BYTES_MAX (4ull << 30)   /* parameters and state */
#define QV_TABLE_DIM_MAX   1024
#define QV_TABLE_BATCH_MAX 1000000        /* ids per lookup or update */

typedef struct qv_table_config {
    uint64_t rows;            /* feature ids the table is sized for, >= 1 */
    uint32_t dim;             /* 1 .. QV_TABLE_DIM_MAX */
    const char *method;       /* "full", "hash:R", "qr:R", "robe:R",
                                 "adapt:R", "int8", "int16", "alpt:8",
                                 "alpt:16", "prune:S", "tt:RANK";
                                 NULL = "full" */
    qv_optimizer optimizer;
    float learning_rate;      /* > 0; 0 = 0.01 */
    float init;               /* initial values uniform in [-init, init];
                                 0 = 0.01 */
    uint64_t seed;            /* initial values and hashing */
    /* A sharded table (docs/EMBEDDINGS.md "Sharded tables"), which only a
     * cluster node (quiverd --cluster) makes: the embedded engine and a
     * quiverd without --cluster refuse shards other than 0 with
     * QV_ERR_UNSUPPORTED. Each shard is a table of this whole config. */
    QV_IN_RESERVED_WORD
    uint32_t shards;          /* 0 = an ordinary table (the default);
                                 1 .. QV_SHARDS_MAX: an id goes to shard
                                 XXH64(id's 8 bytes, little-endian) mod
                                 shards */
    uint32_t replicas;        /* copies of each shard, 0 = 1, at most
                                 QV_REPLICAS_MAX; only with shards */
    uint64_t reserved[QV_RESERVED - 1];   /* 0 */
} qv_table_config;

typedef struct qv_table_info {
    char name[QV_NAME_MAX + 1];
    char method[24];
    uint64_t rows;
    uint32_t dim;
    qv_optimizer optimizer;
    float learning_rate;
    uint64_t param_bytes;     /* parameters as stored */
    uint64_t optimizer_bytes; /* optimizer state */
    double ratio;             /* rows x dim x 4 / param_bytes */
    uint64_t updates;         /* optimizer steps applied (sharded: the
                                 sum of the shards' steps) */
    /* A sharded table on a cluster node: its shards and replicas
     * (qv_table_config); 0 otherwise. */
    QV_IN_RESERVED_WORD
    uint32_t shards;
    uint32_t replicas;
    uint64_t reserved[QV_RESERVED - 1];   /* 0 in this version */
} qv_table_info;

/*
 * Create a table, its rows initialised from seed. Table names follow the
 * rules of collection names; tables and collections are named apart (a
 * table may share a collection's name).
 *
 * config->shards 0 (the default) makes an ordinary table (on a cluster,
 * held whole by every node). shards 1 .. QV_SHARDS_MAX asks for a
 * sharded table: config->shards tables of the whole config (rows, method,
 * seed), each held by config->replicas nodes (0 = 1), an id's row kept by
 * its shard only. Every table call works on a sharded table, answered
 * across its shards (docs/EMBEDDINGS.md "Sharded tables"): a lookup of
 * ids of several shards asks them side by side and gives the rows in
 * the order asked; an update is one write per shard, not one
 * transaction; a load is written to every shard.
 *
 * Returns:
 *   QV_ERR_INVALID     - name is not a valid name; config is NULL, or a
 *                        value in it is out of range: method unknown or
 *                        its parameter, rows 0, dim 0 or above
 *                        QV_TABLE_DIM_MAX, learning_rate or init not
 *                        positive, a size above QV_TABLE_BYTES_MAX,
 *                        shards above QV_SHARDS_MAX, replicas above
 *                        QV_REPLICAS_MAX or not 0 while shards is 0, a
 *                        reserved word not 0 (the checks of
 *                        qv_table_config_check, with its messages)
 *   QV_ERR_READONLY    - the handle was opened read-only
 *   QV_ERR_UNSUPPORTED - shards is not 0 and the database is not a
 *                        cluster node (an embedded handle, or a quiverd
 *                        without --cluster): nothing is created
 *   QV_ERR_EXISTS      - a table of that name exists
 *   and for a sharded create, QV_ERR_INVALID when replicas is more than
 *   the cluster's live nodes or the name starts with "_shard." (the
 *   shards' own tables), QV_ERR_CONNECTION when the node cannot reach
 *   NATS
 */
QV_API qv_status qv_table_create(qv_db *db, const char *name,
                                 const qv_table_config *config);

/*
 * Check config as qv_table_create would, with no name and creating
 * nothing: the method and its parameter, rows, dim, learning_rate, init,
 * the size, shards and replicas against their ranges (never against what
 * the database is), the reserved words. Needs no stored data, so a
 * remote handle answers it itself, and a read-only handle may call it.
 *
 * Returns:
 *   QV_ERR_INVALID - config is NULL, or a value in it is wrong; the
 *                    message is the one qv_table_create gives for the
 *                    same config
 */
QV_API qv_status qv_table_config_check(qv_db *db,
                                       const qv_table_config *config);

/*
 * Remove a table and all its rows, in one transaction.
 *
 * Returns:
 *   QV_ERR_INVALID   - name is not a valid name
 *   QV_ERR_READONLY  - the handle was opened read-only
 *   QV_ERR_NOT_FOUND - there is no such table
 */
QV_API qv_status qv_table_drop(qv_db *db, const char *name);

/*
 * Fill *info, which the caller owns, for one table: its method as it
 * was written ("hash:4"), sizes, compression ratio and optimizer steps.
 *
 * Returns:
 *   QV_ERR_INVALID   - name is not a valid name
 *   QV_ERR_NOT_FOUND - there is no such table
 */
QV_API qv_status qv_table_describe(qv_db *db, const char *name,
                                   qv_table_info *info);

/*
 * All tables in name order, each as qv_table_describe fills it: *out is an
 * array of *count entries, one allocation to release with qv_free() (NULL
 * when there are none).
 *
 * Returns only the statuses of every call (see Conventions).
 */
QV_API qv_status qv_list_tables(qv_db *db, qv_table_info **out, size_t *count);

/*
 * The rows of n ids (1 .. QV_TABLE_BATCH_MAX) into out, n x dim floats
 * the caller owns. full, int8, int16, alpt, prune and tt address rows by
 * id (an id must be below rows); hash, qr, robe and adapt take any id.
 *
 * Returns:
 *   QV_ERR_INVALID   - name is not a valid name; ids or out is NULL; n is
 *                      0 or above QV_TABLE_BATCH_MAX; an id is not below
 *                      rows where ids address rows
 *   QV_ERR_DIMENSION - dim is 0, above QV_TABLE_DIM_MAX, or not the
 *                      table's
 *   QV_ERR_NOT_FOUND - there is no such table
 */
QV_API qv_status qv_table_lookup(qv_db *db, const char *name,
                                 const uint64_t *ids, size_t n, uint32_t dim,
                                 float *out);

/*
 * One optimizer step: grads is n x dim, the gradient of the loss with
 * respect to each looked-up row; a repeated id accumulates. One atomic,
 * durable write.
 *
 * Returns:
 *   QV_ERR_INVALID   - as qv_table_lookup, and a gradient that is not
 *                      finite (nothing changes)
 *   QV_ERR_DIMENSION - as qv_table_lookup
 *   QV_ERR_READONLY  - the handle was opened read-only
 *   QV_ERR_NOT_FOUND - there is no such table
 */
QV_API qv_status qv_table_update(qv_db *db, const char *name,
                                 const uint64_t *ids, size_t n, uint32_t dim,
                                 const float *grads);

/*
 * Load trained float rows (rows first .. first+n-1, n x dim) into the
 * table through its method: how a trained full table is compressed for
 * serving. Only for the methods whose every row is its own: full, int8,
 * int16, alpt and prune. hash, qr, robe, adapt and tt share parameters
 * between ids, so a row cannot be set alone: they are trained in place.
 * One atomic, durable write.
 *
 * Returns:
 *   QV_ERR_INVALID     - name is not a valid name; rows is NULL; n is 0 or
 *                        above QV_TABLE_BATCH_MAX; a value is not finite;
 *                        rows first .. first+n-1 go beyond the table's
 *   QV_ERR_DIMENSION   - as qv_table_lookup
 *   QV_ERR_READONLY    - the handle was opened read-only
 *   QV_ERR_NOT_FOUND   - there is no such table
 *   QV_ERR_UNSUPPORTED - the table's method shares parameters between ids
 *                        (hash, qr, robe, adapt, tt)
 */
QV_API qv_status qv_table_load(qv_db *db, const char *name, uint64_t first,
                               size_t n, uint32_t dim, const float *rows);

#ifdef __cplusplus
}
#endif

#endif /* QUIVER_H */
