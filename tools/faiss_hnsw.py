"""FAISS IndexHNSWFlat with the protocol of `quiver bench ann`: one JSON
line per ef. Queries go in one call per ef (FAISS's own loop, on
`threads` OpenMP threads), so no Python overhead is timed.
Usage: faiss_hnsw.py BASE QUERY GT M EFC THREADS EFS K"""
import os
import sys
import time

import faiss

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from faiss_sweep import rss_anon, sweep_ef  # noqa: E402
from texmex import read_vecs  # noqa: E402


base_path, query_path, gt_path = sys.argv[1:4]
M, efc, threads = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
efs = [int(x) for x in sys.argv[7].split(",")]
k = int(sys.argv[8])
faiss.omp_set_num_threads(threads)
xb = read_vecs(base_path)
xq = read_vecs(query_path)
gt = read_vecs(gt_path)[: len(xq), :k]
rss0 = rss_anon()
index = faiss.IndexHNSWFlat(xb.shape[1], M)
index.hnsw.efConstruction = efc
t0 = time.perf_counter()
index.add(xb)
build = time.perf_counter() - t0
per_vector = (rss_anon() - rss0) / len(xb)
sweep_ef(index.search, lambda ef: setattr(index.hnsw, "efSearch", ef), xq,
         gt, k, efs, {"engine": "faiss", "build_s": build, "n": len(xb),
                      "d": xb.shape[1], "rss_bytes_per_vector": per_vector})
