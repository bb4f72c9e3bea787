# Every include is a path from the top and points down the layers, and no
# two files of the library or the server call each other both ways, nor
# call up a layer (tools/check-layers; docs/ARCHITECTURE.md, "Layers").
# TAP output.
. "$(dirname "$0")/tap.sh"
out=$(python3 "$QUIVER_TOP/tools/check-layers" --objects "$QUIVER_BUILD" 2>&1)
rc=$?
check "includes and calls point down the layers" [ "$rc" -eq 0 ]
[ "$rc" -eq 0 ] || printf '%s\n' "$out" | sed 's/^/# /'
echo "1..$n"
