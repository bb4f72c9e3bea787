# Sourced by tools/bench-cluster and tools/bench-cluster-shards (sh):
# builds quiver and quiverd, makes $work (removed on exit unless KEEP is
# set, with every process started here), and starts nats-servers and
# quiverd nodes on loopback. The caller sets top (the repository).
make -C "$top" -s build/quiver build/quiverd >&2
work=$(mktemp -d)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
[ -n "${KEEP:-}" ] || trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# quiverd on dir with more options; its port in $port, its pid in $last
start_quiverd() {
    dir=$1; shift
    mkdir -p "$dir"
    rm -f "$dir.out"
    tries=0
    while :; do
        "$top/build/quiverd" --db "$dir" --listen 127.0.0.1:0 "$@" \
            > "$dir.out" 2>> "$dir.log" &
        last=$!
        # the first line says where it listens, once it is ready
        while kill -0 $last 2>/dev/null && ! [ -s "$dir.out" ]; do
            sleep 0.1
        done
        if [ -s "$dir.out" ]; then
            port=$(sed -n 's/^listening on 127.0.0.1://p' "$dir.out")
            pids="$pids $last"
            return 0
        fi
        # JetStream may still be electing its leader: try again
        tries=$((tries + 1))
        [ $tries -lt 20 ] || { cat "$dir.log" >&2; exit 1; }
        sleep 0.5
    done
}

start_nats() {   # name client-port [cluster-port routes]; its pid in $last
    mkdir -p "$work/$1"
    # a batch of 1,000 784-d vectors is 3.1 MB; NATS takes 1 MiB by default
    echo "max_payload: 8388608" > "$work/$1.conf"
    if [ -n "${3:-}" ]; then
        nats-server -c "$work/$1.conf" -js -sd "$work/$1" -a 127.0.0.1 \
            -p "$2" -n "$1" \
            --cluster_name qvbench -cluster "nats://127.0.0.1:$3" \
            -routes "$4" -l "$work/$1.log" &
    else
        nats-server -c "$work/$1.conf" -js -sd "$work/$1" -a 127.0.0.1 \
            -p "$2" -l "$work/$1.log" &
    fi
    last=$!
    pids="$pids $last"
}

stop() {   # pids started here: stopped, waited for, out of $pids
    for p in "$@"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
        pids=$(echo " $pids " | sed "s/ $p / /; s/^ *//; s/ *$//")
    done
}
