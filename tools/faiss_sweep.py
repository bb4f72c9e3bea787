"""What the FAISS bench scripts share: resident memory, and the timed
sweep over ef with the protocol of `quiver bench ann`."""
import json
import time


def rss_anon():
    """Anonymous resident bytes of this process (-1 when unknown)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return -1


def sweep_ef(search, set_ef, queries, gt, k, efs, fields):
    """For each ef: set_ef(ef), the better of two timed passes of
    search(queries, k) (one untimed warm-up before the sweep, as quiver
    bench ann), recall@k against gt; one JSON line of fields, then ef, k,
    recall and qps."""
    set_ef(efs[0])
    search(queries, k)
    for ef in efs:
        set_ef(ef)
        secs = float("inf")
        for _ in range(2):
            t0 = time.perf_counter()
            _, ids = search(queries, k)
            secs = min(secs, time.perf_counter() - t0)
        hit = sum(len(set(ids[i]) & set(gt[i])) for i in range(len(gt)))
        line = dict(fields)
        line.update(ef=ef, k=k, recall=hit / (len(gt) * k),
                    qps=len(gt) / secs)
        print(json.dumps(line), flush=True)
