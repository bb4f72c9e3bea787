# examples/embedded.c, built with the suite, runs twice on one directory
# (the second run finds the first one's collection) and prints what the
# program says it will. TAP output.
. "$(dirname "$0")/tap.sh"
bin=$QUIVER_BUILD/embedded
dir=$work
out1=$("$bin" "$dir/db"); rc1=$?
out2=$("$bin" "$dir/db"); rc2=$?
check "first run exits 0" [ "$rc1" -eq 0 ]
check "second run exits 0" [ "$rc2" -eq 0 ]
check "payload comes back" sh -c 'echo "$1" | grep -q "got apple with payload {\"color\":\"red\"}"' _ "$out1"
check "nearest is apple" sh -c 'echo "$1" | sed -n 3p | grep -q "apple at 0.003"' _ "$out1"
check "delete survives reopen" sh -c 'echo "$1" | grep -q "after reopen: 2 documents"' _ "$out2"
echo "1..$n"
