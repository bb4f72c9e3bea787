# Sourced by the shell tests (tests/*.test.sh): TAP lines, a scratch
# directory $work removed at exit with any server whose pid is in
# $server_pid.
set -u
work=$(mktemp -d)
server_pid=
trap '[ -n "$server_pid" ] && kill $server_pid 2>/dev/null; rm -rf "$work"' EXIT
n=0
check() {  # description, command...
    n=$((n + 1)); desc=$1; shift
    if "$@"; then echo "ok $n - $desc"; else echo "not ok $n - $desc"; fi
}
