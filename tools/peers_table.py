"""Read JSON lines of `quiver bench ann`, hnswlib_bench and faiss_hnsw.py
from stdin; print a markdown table: QPS at recall@k 0.95 and 0.99 (linear
interpolation between the two ef points around the target), build
seconds, bytes per vector, and Quiver's ratios to each peer."""
import json
import sys

runs = {}
for line in sys.stdin:
    line = line.strip()
    if not line.startswith("{"):
        continue
    row = json.loads(line)
    runs.setdefault(row.get("engine", "quiver"), []).append(row)


def qps_at(rows, target):
    pts = sorted((r["recall"], r["qps"]) for r in rows)
    for (r0, q0), (r1, q1) in zip(pts, pts[1:]):
        if r0 <= target <= r1:
            return q0 if r1 == r0 else q0 + (q1 - q0) * (target - r0) / (r1 - r0)
    if pts and pts[0][0] >= target:
        return pts[0][1]  # even the narrowest beam reaches it
    return None


def fmt(x, nd=0):
    return "n/a" if x is None else f"{x:,.{nd}f}"


print("| engine | QPS @0.95 | QPS @0.99 | build s | bytes/vector |")
print("|---|---|---|---|---|")
summary = {}
for name in ["quiver", "hnswlib", "faiss"]:
    rows = runs.get(name)
    if not rows:
        continue
    s = {"q95": qps_at(rows, 0.95), "q99": qps_at(rows, 0.99),
         "build": rows[0]["build_s"], "bytes": rows[0]["rss_bytes_per_vector"]}
    summary[name] = s
    print(f"| {name} | {fmt(s['q95'])} | {fmt(s['q99'])} | {s['build']:.2f} | {fmt(s['bytes'])} |")
q = summary.get("quiver")
for peer in ["hnswlib", "faiss"]:
    p = summary.get(peer)
    if not q or not p:
        continue
    def ratio(a, b):
        return "n/a" if a is None or b is None else f"{a / b:.2f}"
    print(f"\nquiver/{peer}: QPS@0.95 {ratio(q['q95'], p['q95'])}x, "
          f"QPS@0.99 {ratio(q['q99'], p['q99'])}x, "
          f"build time {ratio(q['build'], p['build'])}x")
