"""Convert Debian's Fashion-MNIST idx files to texmex files with exact
ground truth. Usage: fashion_mnist.py SRC_DIR OUT_DIR"""
import gzip
import os
import sys

import faiss
import numpy as np


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def write_vecs(path, rows):
    n, d = rows.shape
    head = np.full((n, 1), d, dtype=np.int32).view(np.uint8)
    body = rows.reshape(n, -1).view(np.uint8).reshape(n, -1)
    np.hstack([head, body]).tofile(path)


src, out = sys.argv[1], sys.argv[2]
base = idx(os.path.join(src, "train-images-idx3-ubyte.gz")).reshape(60000, 784)
query = idx(os.path.join(src, "t10k-images-idx3-ubyte.gz")).reshape(10000, 784)
write_vecs(os.path.join(out, "base.bvecs"), base)
write_vecs(os.path.join(out, "query.bvecs"), query)
idx(os.path.join(src, "train-labels-idx1-ubyte.gz")).tofile(os.path.join(out, "base_labels.u8"))
idx(os.path.join(src, "t10k-labels-idx1-ubyte.gz")).tofile(os.path.join(out, "query_labels.u8"))
index = faiss.IndexFlatL2(784)
index.add(base.astype(np.float32))
_, ids = index.search(query.astype(np.float32), 100)
write_vecs(os.path.join(out, "groundtruth.ivecs"), ids.astype(np.int32))
