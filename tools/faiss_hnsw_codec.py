"""FAISS's HNSW over compressed codes, the matches of Quiver's codecs, with
the protocol of `quiver bench ann`: one JSON line per ef.

  sq8    IndexHNSWSQ (QT_8bit, per-dimension ranges)
  pq:M   IndexHNSWPQ (M sub-quantizers of 8 bits)
  bin    IndexBinaryHNSW over the signs after subtracting the mean
         (Hamming; FAISS has no re-ranking for binary indexes)

With RERANK > 0 (not for bin) the index is wrapped in IndexRefineFlat
with k_factor RERANK / K: FAISS then re-ranks from full vectors it keeps
in memory, which rss_bytes_per_vector shows.
Usage: faiss_hnsw_codec.py BASE QUERY GT M EFC THREADS EFS K CODEC RERANK"""
import os
import sys
import time

import faiss
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from faiss_sweep import rss_anon, sweep_ef  # noqa: E402
from texmex import read_vecs  # noqa: E402


base_path, query_path, gt_path = sys.argv[1:4]
M, efc, threads = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
efs = [int(x) for x in sys.argv[7].split(",")]
k, codec, rerank = int(sys.argv[8]), sys.argv[9], int(sys.argv[10])
faiss.omp_set_num_threads(threads)
xb = np.ascontiguousarray(read_vecs(base_path), dtype="float32")
xq = np.ascontiguousarray(read_vecs(query_path), dtype="float32")
gt = read_vecs(gt_path)[: len(xq), :k]
d = xb.shape[1]
rss0 = rss_anon()
t0 = time.perf_counter()
if codec == "bin":
    mean = xb.mean(axis=0)
    pack = lambda x: np.packbits(x > mean, axis=1)  # noqa: E731
    index = faiss.IndexBinaryHNSW(d, M)
    index.hnsw.efConstruction = efc
    index.add(pack(xb))
    xq_in, hnsw = pack(xq), index.hnsw
    code_bytes = (d + 7) // 8
    rerank = 0
else:
    if codec == "sq8":
        inner = faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_8bit, M)
        code_bytes = d
    elif codec.startswith("pq:"):
        m = int(codec[3:])
        inner = faiss.IndexHNSWPQ(d, m, M)
        code_bytes = m
    else:
        sys.exit("codec must be sq8, pq:M or bin")
    inner.hnsw.efConstruction = efc
    inner.train(xb)
    index = inner
    if rerank > 0:
        index = faiss.IndexRefineFlat(inner)
        index.k_factor = rerank / k
    index.add(xb)
    xq_in, hnsw = xq, inner.hnsw
build = time.perf_counter() - t0
per_vector = (rss_anon() - rss0) / index.ntotal
sweep_ef(index.search, lambda ef: setattr(hnsw, "efSearch", ef), xq_in, gt,
         k, efs, {"engine": "faiss", "codec": codec, "rerank": rerank,
                  "build_s": build, "n": index.ntotal, "d": d,
                  "code_bytes_per_vector": code_bytes,
                  "rss_bytes_per_vector": per_vector})
