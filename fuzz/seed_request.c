/*
 * seed_request.c - writes the seed corpus of fuzz_request: one file per
 * kind of request, each a valid frame (some several pipelined frames).
 *   seed_request DIR
 */
#include <stdio.h>
#include <string.h>

#include "wire/proto/frame.h"
#include "wire/quiver.pb-c.h"

static void save(const char *dir, const char *name, Quiver__V1__Request *req)
{
    wbuf out = {0};
    char path[4096];
    frame_append(&out, &req->base);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    fwrite(out.data, 1, out.len, f);
    fclose(f);
    wbuf_release(&out);
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    const char *dir = argv[1];
    float v[4] = {1, 2, 3, 4};
    Quiver__V1__Request req = QUIVER__V1__REQUEST__INIT;
    req.id = 1;

    Quiver__V1__CollectionConfig cfg = QUIVER__V1__COLLECTION_CONFIG__INIT;
    cfg.dim = 4;
    cfg.m = 4;
    Quiver__V1__CreateCollection create = QUIVER__V1__CREATE_COLLECTION__INIT;
    create.name = "d";
    create.config = &cfg;
    req.op_case = QUIVER__V1__REQUEST__OP_CREATE_COLLECTION;
    req.create_collection = &create;
    save(dir, "create", &req);

    Quiver__V1__Document doc = QUIVER__V1__DOCUMENT__INIT, *docs[1] = {&doc};
    doc.id = "z";
    doc.n_vector = 4;
    doc.vector = v;
    doc.has_payload = 1;
    doc.payload = "{\"k\":[1,2,{\"n\":null}]}";
    Quiver__V1__Upsert up = QUIVER__V1__UPSERT__INIT;
    up.collection = "c";
    up.n_documents = 1;
    up.documents = docs;
    req.op_case = QUIVER__V1__REQUEST__OP_UPSERT;
    req.upsert = &up;
    save(dir, "upsert", &req);

    Quiver__V1__SearchOptions opt = QUIVER__V1__SEARCH_OPTIONS__INIT;
    opt.k = 2;
    opt.ef = 8;
    Quiver__V1__Search search = QUIVER__V1__SEARCH__INIT;
    search.collection = "c";
    search.n_query = 4;
    search.query = v;
    search.options = &opt;
    req.op_case = QUIVER__V1__REQUEST__OP_SEARCH;
    req.search = &search;
    save(dir, "search", &req);

    Quiver__V1__SearchBatch batch = QUIVER__V1__SEARCH_BATCH__INIT;
    batch.collection = "c";
    batch.dim = 2;
    batch.n_queries = 4;
    batch.queries = v;
    batch.options = &opt;
    req.op_case = QUIVER__V1__REQUEST__OP_SEARCH_BATCH;
    req.search_batch = &batch;
    save(dir, "search_batch", &req);

    Quiver__V1__Get get = QUIVER__V1__GET__INIT;
    get.collection = "c";
    get.id = "a";
    req.op_case = QUIVER__V1__REQUEST__OP_GET;
    req.get = &get;
    save(dir, "get", &req);

    Quiver__V1__Delete del = QUIVER__V1__DELETE__INIT;
    del.collection = "c";
    del.id = "b";
    req.op_case = QUIVER__V1__REQUEST__OP_DELETE;
    req.delete_ = &del;
    save(dir, "delete", &req);

    Quiver__V1__ListCollections list = QUIVER__V1__LIST_COLLECTIONS__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_LIST_COLLECTIONS;
    req.list_collections = &list;
    save(dir, "list", &req);

    Quiver__V1__DescribeCollection desc = QUIVER__V1__DESCRIBE_COLLECTION__INIT;
    desc.name = "c";
    req.op_case = QUIVER__V1__REQUEST__OP_DESCRIBE_COLLECTION;
    req.describe_collection = &desc;
    save(dir, "describe", &req);

    cfg.codec = "sq8";
    cfg.train_min = 2;
    create.name = "q";
    req.op_case = QUIVER__V1__REQUEST__OP_CREATE_COLLECTION;
    req.create_collection = &create;
    save(dir, "create_codec", &req);

    /* shards and replicas (UNSUPPORTED but on a cluster node), and the
     * placement a client may not set */
    cfg.codec = "";
    cfg.train_min = 0;
    cfg.shards = 4;
    cfg.replicas = 2;
    create.name = "s";
    save(dir, "create_sharded", &req);
    char *placement[2] = {"n1", "n2"};
    cfg.n_placement = 2;
    cfg.placement = placement;
    save(dir, "create_placement", &req);

    opt.rerank = 3;
    req.op_case = QUIVER__V1__REQUEST__OP_SEARCH;
    req.search = &search;
    save(dir, "search_rerank", &req);

    Quiver__V1__Train train = QUIVER__V1__TRAIN__INIT;
    train.collection = "c";
    req.op_case = QUIVER__V1__REQUEST__OP_TRAIN;
    req.train = &train;
    save(dir, "train", &req);

    Quiver__V1__DropIndex drop = QUIVER__V1__DROP_INDEX__INIT;
    drop.collection = "c";
    drop.field = "k";
    req.op_case = QUIVER__V1__REQUEST__OP_DROP_INDEX;
    req.drop_index = &drop;
    save(dir, "drop_index", &req);

    Quiver__V1__TableConfig tcfg = QUIVER__V1__TABLE_CONFIG__INIT;
    tcfg.rows = 8;
    tcfg.dim = 2;
    tcfg.method = "hash:2";
    tcfg.optimizer = 1;
    Quiver__V1__TableCreate tcreate = QUIVER__V1__TABLE_CREATE__INIT;
    tcreate.name = "t";
    tcreate.config = &tcfg;
    req.op_case = QUIVER__V1__REQUEST__OP_TABLE_CREATE;
    req.table_create = &tcreate;
    save(dir, "table_create", &req);
    tcfg.rows = 64;
    tcfg.method = "tt:2";
    save(dir, "table_create_tt", &req);
    tcfg.rows = 8;
    tcfg.method = "hash:2";

    uint64_t tids[2] = {1, 5};
    Quiver__V1__TableLookup look = QUIVER__V1__TABLE_LOOKUP__INIT;
    look.name = "t";
    look.n_ids = 2;
    look.ids = tids;
    look.dim = 2;
    req.op_case = QUIVER__V1__REQUEST__OP_TABLE_LOOKUP;
    req.table_lookup = &look;
    save(dir, "table_lookup", &req);

    Quiver__V1__TableUpdate tup = QUIVER__V1__TABLE_UPDATE__INIT;
    tup.name = "t";
    tup.n_ids = 2;
    tup.ids = tids;
    tup.dim = 2;
    tup.n_grads = 4;
    tup.grads = v;
    req.op_case = QUIVER__V1__REQUEST__OP_TABLE_UPDATE;
    req.table_update = &tup;
    save(dir, "table_update", &req);

    Quiver__V1__TableLoad tload = QUIVER__V1__TABLE_LOAD__INIT;
    tload.name = "t";
    tload.first = 1;
    tload.dim = 2;
    tload.n_rows = 4;
    tload.rows = v;
    req.op_case = QUIVER__V1__REQUEST__OP_TABLE_LOAD;
    req.table_load = &tload;
    save(dir, "table_load", &req);

    Quiver__V1__TableDescribe tdesc = QUIVER__V1__TABLE_DESCRIBE__INIT;
    tdesc.name = "t";
    req.op_case = QUIVER__V1__REQUEST__OP_TABLE_DESCRIBE;
    req.table_describe = &tdesc;
    save(dir, "table_describe", &req);

    Quiver__V1__ListTables ltables = QUIVER__V1__LIST_TABLES__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_LIST_TABLES;
    req.list_tables = &ltables;
    save(dir, "list_tables", &req);

    Quiver__V1__ListIndexes lindexes = QUIVER__V1__LIST_INDEXES__INIT;
    lindexes.collection = "d";
    req.op_case = QUIVER__V1__REQUEST__OP_LIST_INDEXES;
    req.list_indexes = &lindexes;
    save(dir, "list_indexes", &req);

    /* the requests that only name a collection or a table, or nothing */
    Quiver__V1__DropCollection dropc = QUIVER__V1__DROP_COLLECTION__INIT;
    dropc.name = "d";
    req.op_case = QUIVER__V1__REQUEST__OP_DROP_COLLECTION;
    req.drop_collection = &dropc;
    save(dir, "drop_collection", &req);

    Quiver__V1__TableDrop tdrop = QUIVER__V1__TABLE_DROP__INIT;
    tdrop.name = "t";
    req.op_case = QUIVER__V1__REQUEST__OP_TABLE_DROP;
    req.table_drop = &tdrop;
    save(dir, "table_drop", &req);

    Quiver__V1__Scan scan = QUIVER__V1__SCAN__INIT;
    scan.collection = "d";
    scan.limit = 10;
    scan.has_filter = 1;
    scan.filter = "{\"k\":{\"$gte\":1}}";
    req.op_case = QUIVER__V1__REQUEST__OP_SCAN;
    req.scan = &scan;
    save(dir, "scan", &req);

    Quiver__V1__Count count = QUIVER__V1__COUNT__INIT;
    count.collection = "d";
    count.has_filter = 1;
    count.filter = "{\"k\":1}";
    req.op_case = QUIVER__V1__REQUEST__OP_COUNT;
    req.count = &count;
    save(dir, "count", &req);

    Quiver__V1__DeleteWhere dwhere = QUIVER__V1__DELETE_WHERE__INIT;
    dwhere.collection = "d";
    dwhere.filter = "{\"k\":{\"$in\":[1,2]}}";
    req.op_case = QUIVER__V1__REQUEST__OP_DELETE_WHERE;
    req.delete_where = &dwhere;
    save(dir, "delete_where", &req);

    Quiver__V1__CreateIndex cindex = QUIVER__V1__CREATE_INDEX__INIT;
    cindex.collection = "d";
    cindex.field = "k";
    cindex.type = QUIVER__V1__INDEX_TYPE__INT;
    req.op_case = QUIVER__V1__REQUEST__OP_CREATE_INDEX;
    req.create_index = &cindex;
    save(dir, "create_index", &req);

    Quiver__V1__Backup backup = QUIVER__V1__BACKUP__INIT;
    backup.dir = "nightly";
    req.op_case = QUIVER__V1__REQUEST__OP_BACKUP;
    req.backup = &backup;
    save(dir, "backup", &req);

    Quiver__V1__Stats stats = QUIVER__V1__STATS__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_STATS;
    req.stats = &stats;
    save(dir, "stats", &req);

    Quiver__V1__ClusterStatus cluster = QUIVER__V1__CLUSTER_STATUS__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_CLUSTER_STATUS;
    req.cluster_status = &cluster;
    save(dir, "cluster_status", &req);

    Quiver__V1__ClusterDrain drain = QUIVER__V1__CLUSTER_DRAIN__INIT;
    drain.node = "n2";
    req.op_case = QUIVER__V1__REQUEST__OP_CLUSTER_DRAIN;
    req.cluster_drain = &drain;
    save(dir, "cluster_drain", &req);

    Quiver__V1__Compact compact = QUIVER__V1__COMPACT__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_COMPACT;
    req.compact = &compact;
    save(dir, "compact", &req);

    Quiver__V1__Check check = QUIVER__V1__CHECK__INIT;
    req.op_case = QUIVER__V1__REQUEST__OP_CHECK;
    req.check = &check;
    save(dir, "check", &req);

    Quiver__V1__Authenticate auth = QUIVER__V1__AUTHENTICATE__INIT;
    auth.token = "token";
    req.op_case = QUIVER__V1__REQUEST__OP_AUTHENTICATE;
    req.authenticate = &auth;
    save(dir, "authenticate", &req);
    return 0;
}
