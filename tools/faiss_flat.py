"""FAISS IndexFlatL2 with one thread, queries one at a time; prints JSON
and, given QUIVER_JSON in the environment, the Quiver/FAISS QPS ratio."""
import json
import os
import sys
import time

import faiss
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from texmex import read_vecs  # noqa: E402

base, query, gt, nq = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
faiss.omp_set_num_threads(1)
xb = read_vecs(base)
xq = read_vecs(query, nq)
truth = read_vecs(gt, nq)
k = 10
t0 = time.perf_counter()
index = faiss.IndexFlatL2(xb.shape[1])
index.add(xb)
build = time.perf_counter() - t0
found = 0
t0 = time.perf_counter()
for i in range(len(xq)):
    _, ids = index.search(xq[i : i + 1], k)
    found += len(set(ids[0]) & set(truth[i, :k]))
elapsed = time.perf_counter() - t0
# FAISS's own best case: the whole batch in one call (BLAS matrix product).
t0 = time.perf_counter()
index.search(xq, k)
batch_elapsed = time.perf_counter() - t0
out = {"bench": "faiss-flat", "n": len(xb), "d": xb.shape[1], "nq": len(xq),
       "k": k, "import_s": round(build, 4), "qps": round(len(xq) / elapsed, 3),
       "batch_qps": round(len(xq) / batch_elapsed, 3),
       "recall": found / (len(xq) * k)}
print(json.dumps(out))
if os.environ.get("QUIVER_JSON"):
    q = json.loads(os.environ["QUIVER_JSON"])
    print(json.dumps({"qps_ratio_quiver_over_faiss": round(q["qps"] / out["qps"], 3),
                      "qps_ratio_quiver_over_faiss_batch": round(q["qps"] / out["batch_qps"], 3)}))
