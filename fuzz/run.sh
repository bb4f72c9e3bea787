#!/bin/sh
# Run one libFuzzer target of build/fuzz (made by `make fuzz`):
#
#   fuzz/run.sh smoke TARGET          its smoke share: a fixed number of
#                                     inputs from a fixed seed (repeatable),
#                                     starting from its committed corpus;
#                                     new inputs go to a scratch directory.
#                                     One TAP line; the log's end on failure.
#   fuzz/run.sh long TARGET SECONDS   for SECONDS, from the committed corpus
#                                     and the inputs of earlier long runs,
#                                     which it adds to (build/fuzz/corpus/).
#
# A crashing input is saved as build/fuzz/artifacts/TARGET-crash-...
# (reproduce: build/fuzz/TARGET FILE). FUZZ_RUNS, when set, replaces
# every target's smoke share. Each run gets a private TMPDIR, removed
# afterwards with whatever the target left in it: a target removes its
# scratch database when it exits normally, but a crash ends it before.
set -u
mode=$1 t=$2 seconds=${3:-}
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$top/build/fuzz/$t
corpus=$top/fuzz/corpus/${t#fuzz_}

# Each target's smoke share (about a few seconds on the 2-vCPU machine of
# docs/BENCHMARKS.md), its dictionary if it has one, and other options.
# An input running 2 minutes is a hang (libFuzzer's default waits 20).
runs=20000 dict= options=
case $t in
fuzz_filter) runs=5000 dict=filter.dict ;;
# a table record may size up to QV_TABLE_BYTES_MAX (4 GiB), allocated
# (calloc: not touched) before its chunks are found missing
fuzz_records) runs=260 options=-malloc_limit_mb=4400 ;;
fuzz_remote) runs=10000 ;;
esac
[ -n "${FUZZ_RUNS:-}" ] && runs=$FUZZ_RUNS
mkdir -p "$top/build/fuzz/artifacts"
set -- -artifact_prefix="$top/build/fuzz/artifacts/$t-" -timeout=120 $options
[ -n "$dict" ] && set -- "$@" -dict="$top/fuzz/$dict"

scratch=$(mktemp -d "${TMPDIR:-/tmp}/quiver-fuzzrun-XXXXXX") || exit 1
trap 'rm -rf "$scratch"' EXIT
mkdir "$scratch/tmp" "$scratch/new"
export TMPDIR=$scratch/tmp
rc=0
case $mode in
smoke)
    # absolute paths: some targets work in their scratch directory
    if "$bin" "$@" -runs="$runs" -seed=1 "$scratch/new" "$corpus" \
        >"$scratch/log" 2>&1; then
        echo "ok 1 - $t: $(grep -o 'Done [0-9]* runs.*' "$scratch/log")"
    else
        rc=1
        echo "not ok 1 - $t crashed:"
        tail -30 "$scratch/log" | sed 's/^/# /'
    fi
    ;;
long)
    mkdir -p "$top/build/fuzz/corpus/${t#fuzz_}"
    "$bin" "$@" -max_total_time="$seconds" "$top/build/fuzz/corpus/${t#fuzz_}" \
        "$corpus"
    rc=$?
    ;;
*)
    echo "usage: fuzz/run.sh smoke|long TARGET [SECONDS]" >&2
    rc=2
    ;;
esac
exit $rc
