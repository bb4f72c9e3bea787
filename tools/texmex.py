"""Read texmex .fvecs / .bvecs / .ivecs files into numpy arrays."""
import numpy as np


def read_vecs(path, limit=None):
    if path.endswith(".bvecs"):
        elem, dtype = 1, np.uint8
    elif path.endswith(".fvecs"):
        elem, dtype = 4, np.float32
    elif path.endswith(".ivecs"):
        elem, dtype = 4, np.int32
    else:
        raise SystemExit(f"{path}: expected .fvecs, .bvecs or .ivecs")
    raw = np.fromfile(path, dtype=np.uint8)
    dim = int(raw[:4].view(np.int32)[0])
    row = 4 + dim * elem
    n = raw.size // row
    if limit:
        n = min(n, limit)
    rows = raw[: n * row].reshape(n, row)[:, 4:]
    data = rows.copy().view(dtype).reshape(n, dim)
    return data.astype(np.float32) if dtype == np.uint8 else data
