# quiverd built with ThreadSanitizer ($1 the tsan build) under 8 parallel
# clients doing mixed reads and writes, then stopped: it must exit 0
# (ThreadSanitizer makes it exit 66 on any report), every request must be
# answered, and `check` must pass. TAP output.
. "$(dirname "$0")/tap.sh"
tsan=$1
mkfifo "$work/ready"
"$tsan/quiverd" --db "$work/db" --listen 127.0.0.1:0 > "$work/ready" \
    2> "$work/quiverd.log" &
server_pid=$!
read -r line < "$work/ready"
port=${line##*:}
out=$("$tsan/quiver" bench server --connect "127.0.0.1:$port" --op mixed \
      --clients 8 --n 2000 --dim 16 --seconds 3 --json)
check "parallel clients: all answered" \
    sh -c 'printf "%s" "$1" | grep -q "\"errors\":0,"' _ "$out"
out=$("$tsan/quiver" --connect "127.0.0.1:$port" --json check)
check "check after the load" sh -c 'printf "%s" "$1" | grep -q "\"ok\":true"' \
    _ "$out"
kill -TERM $server_pid
wait $server_pid
rc=$?
server_pid=
check "quiverd exits 0 (no ThreadSanitizer report)" [ "$rc" -eq 0 ]
grep -q ThreadSanitizer "$work/quiverd.log" && sed -n '1,60p' "$work/quiverd.log" | sed 's/^/# /'
echo "1..$n"
