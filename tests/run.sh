#!/bin/sh
# Run the whole test suite from the build directory given as $1 (the ASan
# build), and the ThreadSanitizer tests from build/tsan when it is built
# (`tests/run.sh BUILD tsan`: only those), and end with one line
# "N passed, N failed". Every test program
# speaks TAP (cmocka's, or the shell tests' own); this script counts the
# "ok" and "not ok" lines. A program that crashes or exits non-zero
# without reporting a failure counts as one failed test. cmocka reports a
# skipped test as "not ok N # SKIP": counted as skipped, and listed.
#
# Everything runs with TMPDIR set to a directory of its own, which must be
# empty at the end: a test or fuzz target that leaves its scratch behind
# is a failed test ("scratch"), and what it left is listed and removed.
set -u
build=${1:-build/asan}
top=$(cd "$(dirname "$0")/.." && pwd)
export CMOCKA_MESSAGE_OUTPUT=TAP
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export QUIVER_BUILD=$top/$build
export QUIVER_TOP=$top
passed=0 failed=0 skipped=0
suite_tmp=$(mktemp -d "${TMPDIR:-/tmp}/quiver-suite-XXXXXX") || exit 1
log=$suite_tmp.log
trap 'rm -rf "$suite_tmp" "$log"' EXIT
export TMPDIR=$suite_tmp

run_one() {  # name, command...
    name=$1; shift
    "$@" >"$log" 2>&1
    rc=$?
    ok=$(grep -c '^ok ' "$log")
    skip=$(grep -c '^not ok .*# SKIP' "$log")
    bad=$(($(grep -c '^not ok ' "$log") - skip))
    if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
        bad=1
    fi
    if [ "$bad" -ne 0 ] || [ "$ok" -eq 0 ]; then
        echo "---- $name (exit $rc)"
        cat "$log"
        [ "$ok" -eq 0 ] && [ "$bad" -eq 0 ] && bad=1
    fi
    echo "$name: $ok passed, $bad failed, $skip skipped"
    grep '# SKIP' "$log" | sed 's/^/    /'
    passed=$((passed + ok))
    failed=$((failed + bad))
    skipped=$((skipped + skip))
}

# ThreadSanitizer (build/tsan): the tests that run threads and processes
# side by side, embedded and through quiverd, and quiverd under parallel
# clients.
tsan_suite() {
    tsan=$top/build/tsan
    [ -x "$tsan/tests/test_api" ] || return 0
    run_one "test_api (tsan)" env QUIVER_BUILD="$tsan" "$tsan/tests/test_api"
    run_one "test_api (tsan, remote)" env QUIVER_BUILD="$tsan" \
        QUIVER_TEST_REMOTE=1 "$tsan/tests/test_api"
    run_one "test_persist (tsan)" env QUIVER_BUILD="$tsan" \
        "$tsan/tests/test_persist"
    run_one "test_server (tsan)" env QUIVER_BUILD="$tsan" \
        "$tsan/tests/test_server"
    run_one "test_cluster (tsan)" env QUIVER_BUILD="$tsan" \
        "$tsan/tests/test_cluster"
    run_one "quiverd under parallel clients (tsan)" sh \
        "$top/tests/tsan_load.sh" "$tsan"
}

if [ "${2:-}" = tsan ]; then  # make tsan: only those
    tsan_suite
    rm -f "$log"
    echo "$passed passed, $failed failed, $skipped skipped"
    [ "$failed" -eq 0 ]
    exit
fi

for t in "$top/$build"/tests/test_*; do
    [ -x "$t" ] && run_one "$(basename "$t")" "$t"
done
# The conformance suite: the end-to-end API tests again, through quiverd.
run_one "test_api (remote)" env QUIVER_TEST_REMOTE=1 "$top/$build/tests/test_api"
run_one "test_api (remote, TLS)" env QUIVER_TEST_REMOTE=1 QUIVER_TEST_TLS=1 \
    "$top/$build/tests/test_api"
run_one "test_codec (remote)" env QUIVER_TEST_REMOTE=1 "$top/$build/tests/test_codec"
run_one "test_table (remote)" env QUIVER_TEST_REMOTE=1 "$top/$build/tests/test_table"
tsan_suite
for t in "$top"/tests/*.test.sh; do
    run_one "$(basename "$t" .test.sh)" sh "$t"
done
# Fuzz smoke: each libFuzzer target's smoke share (fuzz/run.sh), a fixed
# number of inputs from a fixed seed, starting from its committed corpus.
for t in "$top"/build/fuzz/fuzz_*; do
    [ -x "$t" ] && run_one "$(basename "$t")" \
        "$top/fuzz/run.sh" smoke "$(basename "$t")"
done
# Nothing may be left in the suite's TMPDIR.
left_behind() {
    left=$(ls -A "$suite_tmp")
    if [ -z "$left" ]; then
        echo "ok 1 - every test removed its scratch"
    else
        echo "not ok 1 - scratch left in TMPDIR:"
        echo "$left" | sed 's/^/#   /'
    fi
}
run_one scratch left_behind
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
