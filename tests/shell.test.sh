# The quiver shell driven through standard input: every command, its
# output, and bad input (clear message, exit status 1, nothing changed).
# TAP output.
set -u
bin=$QUIVER_BUILD/quiver
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
n=0
check() {  # description, command...
    n=$((n + 1)); desc=$1; shift
    if "$@"; then echo "ok $n - $desc"; else echo "not ok $n - $desc"; fi
}
has() { printf '%s\n' "$1" | grep -qF -- "$2"; }
run() { printf '%s\n' "$@" | "$bin" --db "$dir/db" 2>&1; }

out=$(run 'create pts dim=3 metric=l2 M=8 ef_construction=50' \
          'upsert pts a [1, 0, 0] {"tag": "x"}' \
          'upsert pts b [0, 1, 0]' \
          'upsert pts c [0, 0, 1]' \
          'search pts [1, 0.1, 0] k=2' \
          'search pts [0, 0, 1] k=1 ef=16 exact=true' \
          'get pts a' \
          'delete pts b' \
          'collections' \
          'describe pts')
rc=$?
check "good session exits 0" [ "$rc" -eq 0 ]
check "search ranks a first" has "$out" "1	a	0.01"
check "search gives k hits" has "$out" "2	b	"
check "exact search with options" has "$out" "1	c	0"
check "describe shows index parameters" has "$out" "M=8 ef_construction=50"
check "get shows the payload" has "$out" 'payload: {"tag":"x"}'
check "describe counts after delete" has "$out" "count=2"

out=$(run 'frobnicate' 'search pts [1, 2] k=1' 'upsert pts d [1, "x", 3]' \
          'upsert pts d [1, 2, 3] [4]' 'upsert pts d [1, 2, 3] {"a":1,"a":2}' \
          'search pts [1, 0, 0] k=0' 'create pts dim=3' 'get pts nope' \
          'create q dim=abc' 'create q dim=4 M=1' 'search pts [1, 0, 0] ef=x' \
          'search pts [1, 0, 0] fast=yes')
rc=$?
check "bad session exits non-zero" [ "$rc" -ne 0 ]
check "unknown command named" has "$out" "unknown command 'frobnicate'"
check "wrong dimension named" has "$out" "DIMENSION: query vector has dimension 2; collection 'pts' has 3"
check "non-number element named" has "$out" "vector element 1 is not a number"
check "non-object payload refused" has "$out" "payload must be a JSON object"
check "duplicate key refused" has "$out" "duplicate"
check "k=0 refused" has "$out" "INVALID: k must be 1 to 10000, not 0"
check "existing collection refused" has "$out" "EXISTS: collection 'pts' already exists"
check "missing document named" has "$out" "NOT_FOUND: document 'nope' not found"
check "bad dimension literal named" has "$out" "bad dimension 'abc'"
check "bad M refused" has "$out" "M must be 2 to"
check "bad ef named" has "$out" "bad ef 'x'"
check "unknown search option named" has "$out" "unknown search option 'fast=yes'"
out=$(run 'describe pts' 'get pts d')
check "bad input changed nothing" has "$out" "count=2"
check "no half-written document" has "$out" "NOT_FOUND"
echo "1..$n"
