// hnswlib on texmex files, with the same protocol as `quiver bench ann`:
// build with M / ef_construction / threads, then for each ef run every
// query as a single search on `threads` threads; one JSON line per ef.
//   hnswlib_bench BASE QUERY GT M EFC THREADS EF,EF,... K [INDEX_FILE [load]]
// With INDEX_FILE the built index is saved there and loaded again; with
// "load" after it nothing is built: the index saved by an earlier run is
// loaded and searched (BASE is not read), for the memory of open and
// search alone on sets that take long to build.
#include <hnswlib/hnswlib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

static std::vector<float> read_vecs(const char *path, int &dim, long &n)
{
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(1); }
    bool bytes = strstr(path, ".bvecs") != nullptr;
    std::vector<float> out;
    int32_t d;
    n = 0;
    while (fread(&d, 4, 1, f) == 1) {
        dim = d;
        if (bytes) {
            std::vector<unsigned char> row(d);
            if (fread(row.data(), 1, d, f) != (size_t)d) break;
            for (int i = 0; i < d; i++) out.push_back(row[i]);
        } else {
            std::vector<float> row(d);
            if (fread(row.data(), 4, d, f) != (size_t)d) break;
            out.insert(out.end(), row.begin(), row.end());
        }
        n++;
    }
    fclose(f);
    return out;
}

static std::vector<int> read_ivecs(const char *path, int &dim, long &n)
{
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(1); }
    std::vector<int> out;
    int32_t d;
    n = 0;
    while (fread(&d, 4, 1, f) == 1) {
        dim = d;
        std::vector<int> row(d);
        if (fread(row.data(), 4, d, f) != (size_t)d) break;
        out.insert(out.end(), row.begin(), row.end());
        n++;
    }
    fclose(f);
    return out;
}

// A figure of /proc/self/status in bytes ("RssAnon", "VmHWM").
static long status_bytes(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    size_t len = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, field, len) && line[len] == ':' &&
            sscanf(line + len + 1, "%ld kB", &kb) == 1) break;
    if (f) fclose(f);
    return kb * 1024;
}

static long rss_anon() { return status_bytes("RssAnon"); }

template <class F> static void parallel(long n, int threads, F fn)
{
    std::atomic<long> next(0);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; t++)
        pool.emplace_back([&] {
            for (long i; (i = next++) < n;) fn(i);
        });
    for (auto &t : pool) t.join();
}

static double now()
{
    return std::chrono::duration<double>(
        std::chrono::steady_clock::now().time_since_epoch()).count();
}

int main(int argc, char **argv)
{
    bool load = argc == 11 && !strcmp(argv[10], "load");
    if ((argc != 9 && argc != 10 && !load)) {
        fprintf(stderr, "usage: hnswlib_bench BASE QUERY GT M EFC THREADS EFS K "
                "[INDEX_FILE [load]]\n");
        return 2;
    }
    int dim = 0, qdim, gdim;
    long n = 0, nq, ng;
    std::vector<float> base;
    if (!load)
        base = read_vecs(argv[1], dim, n);
    std::vector<float> queries = read_vecs(argv[2], qdim, nq);
    std::vector<int> gt = read_ivecs(argv[3], gdim, ng);
    int M = atoi(argv[4]), efc = atoi(argv[5]), threads = atoi(argv[6]);
    int k = atoi(argv[8]);
    if (load)
        dim = qdim;
    long rss0 = rss_anon();
    hnswlib::L2Space space(dim);
    hnswlib::HierarchicalNSW<float> *index = nullptr;
    double build_s = 0, bytes = 0;
    if (!load) {
        index = new hnswlib::HierarchicalNSW<float>(&space, n, M, efc);
        double t0 = now();
        parallel(n, threads,
                 [&](long i) { index->addPoint(&base[i * dim], i); });
        build_s = now() - t0;
        bytes = (double)(rss_anon() - rss0) / n;
    }
    // With INDEX_FILE: save the index, free it and the base, and load it
    // again (hnswlib's open: the whole file read into memory), so that
    // RssAnon after the load is the index alone.
    double open_s = 0;
    long rss_open = rss_anon();
    long rss_file_open = status_bytes("RssFile");
    if (argc >= 10) {
        if (!load) {
            index->saveIndex(argv[9]);
            delete index;
            std::vector<float>().swap(base);
        }
        double t1 = now();
        index = new hnswlib::HierarchicalNSW<float>(&space, argv[9]);
        open_s = now() - t1;
        rss_open = rss_anon();
        rss_file_open = status_bytes("RssFile");
        if (load) {
            n = (long)index->cur_element_count;
            bytes = (double)(rss_open - rss0) / n;
        }
    }
    std::stringstream efs(argv[7]);
    std::string tok;
    bool warm = false;
    while (std::getline(efs, tok, ',')) {
        int ef = atoi(tok.c_str());
        index->setEf(ef);
        std::vector<long> found(nq * k, -1);
        auto pass = [&]() {
            double start = now();
            parallel(nq, threads, [&](long i) {
                auto res = index->searchKnn(&queries[i * dim], k);
                for (int j = k - 1; !res.empty(); j--, res.pop())
                    found[i * k + j] = (long)res.top().second;
            });
            return now() - start;
        };
        if (!warm) {  // one untimed warm-up pass, as quiver bench ann
            pass();
            warm = true;
        }
        double secs = pass(), again = pass();  // the better of two
        if (again < secs) secs = again;
        long hit = 0;
        for (long i = 0; i < nq; i++)
            for (int j = 0; j < k; j++)
                for (int t = 0; t < k; t++)
                    hit += found[i * k + j] == gt[i * gdim + t];
        printf("{\"engine\":\"hnswlib\",\"ef\":%d,\"k\":%d,\"recall\":%.6f,"
               "\"qps\":%.1f,\"build_s\":%.3f,\"n\":%ld,\"d\":%d,"
               "\"rss_bytes_per_vector\":%.0f,\"open_s\":%.3f,"
               "\"rss_anon_bytes\":%ld,\"rss_file_bytes\":%ld,"
               "\"max_rss_bytes\":%ld,\"rss_anon_now_bytes\":%ld,"
               "\"rss_file_now_bytes\":%ld}\n", ef, k,
               (double)hit / (nq * k), nq / secs, build_s, n, dim, bytes,
               open_s, rss_open, rss_file_open, status_bytes("VmHWM"),
               rss_anon(), status_bytes("RssFile"));
        fflush(stdout);
    }
    delete index;
    return 0;
}
