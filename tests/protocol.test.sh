# Every operation of quiver.proto's Request is served, sent, documented
# and fuzzed: a case in wire/server/dispatch.c, an encoding in
# wire/remote/remote.c, a row in docs/PROTOCOL.md, a seed frame in
# fuzz/seed_request.c and its kind in wire/proto/ops.c (docs/ARCHITECTURE.md, "Adding an operation").
# TAP output.
. "$(dirname "$0")/tap.sh"
top=$QUIVER_TOP
ops=$(sed -n '/oneof op {/,/}/p' "$top/wire/quiver.proto" |
      sed -n 's/^ *[A-Za-z]* \([a-z_]*\) = [0-9]*;.*/\1/p')
check "quiver.proto lists the operations" [ "$(echo "$ops" | wc -w)" -ge 20 ]
for op in $ops; do
    case_name=QUIVER__V1__REQUEST__OP_$(echo "$op" | tr '[:lower:]' '[:upper:]')
    check "$op: served" grep -q "$case_name\b" "$top/wire/server/dispatch.c"
    check "$op: sent by the client" grep -q "$case_name\b" \
        "$top/wire/remote/remote.c"
    check "$op: in PROTOCOL.md" grep -q "\`$op {" "$top/docs/PROTOCOL.md"
    check "$op: a fuzz seed" grep -q "$case_name;" "$top/fuzz/seed_request.c"
    check "$op: its kind (read, write, local) in wire/proto/ops.c" \
        grep -q "$case_name:" "$top/wire/proto/ops.c"
done
echo "1..$n"
