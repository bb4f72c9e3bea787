# The bench programs on small generated data, so that they keep working
# and keep printing what docs/CLI.md says: each runs to the end, prints
# its JSON, and its quality figures are those of a working engine
# (recall, hits, AUC). Timing is never asserted. TAP output.
. "$(dirname "$0")/tap.sh"
bin=$QUIVER_BUILD/quiver
srv=$QUIVER_BUILD/quiverd
# The number a JSON line gives a field ("" when it has none).
field() {  # line, name
    printf '%s\n' "$1" | sed -n "s/.*\"$2\":\(-\{0,1\}[0-9.e+-]*\).*/\1/p"
}
# Whether a number (a field's text) is at least a bound.
at_least() { [ -n "$1" ] && awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }
lines_of() { printf '%s\n' "$1" | grep -c "$2"; }

# Clustered vectors: 10 classes of 16-d points around their own centre,
# the class of row i is i % 10 (written one byte per row as labels).
perl -e '
    srand(7);
    my @c = map { [map { rand(10) } 1..16] } 0..9;
    sub rows { my ($path, $n, $off) = @_;
        open(my $f, ">", $path) or die; binmode $f;
        for my $i (0..$n-1) { my $k = ($i + $off) % 10;
            print $f pack("l<f<16", 16, map { $c[$k][$_] + rand(2) - 1 } 0..15) }
        close $f }
    rows("'"$work"'/base.fvecs", 10000, 0);
    rows("'"$work"'/query.fvecs", 100, 3);
    open(my $l, ">", "'"$work"'/labels.u8") or die; binmode $l;
    print $l pack("C*", map { $_ % 10 } 0..9999); close $l;'
check "generated data" [ "$(wc -c < "$work/base.fvecs")" -eq 680000 ]
vecs="--base $work/base.fvecs --query $work/query.fvecs"

# The exact neighbours of the first 20 queries among the first 2,000 rows,
# brute force here, for bench flat's --gt.
head -c 136000 "$work/base.fvecs" > "$work/base2k.fvecs"
perl -e '
    sub rows { my ($path, $n) = @_; open(my $f, "<", $path) or die;
        binmode $f; my @r; for (1..$n) { read($f, my $b, 68) == 68 or die;
        my ($d, @v) = unpack("l<f<16", $b); push @r, \@v } return @r }
    my @b = rows("'"$work"'/base2k.fvecs", 2000);
    my @q = rows("'"$work"'/query.fvecs", 20);
    open(my $g, ">", "'"$work"'/gt.ivecs") or die; binmode $g;
    for my $q (@q) { my @d = map { my $v = $b[$_]; my $s = 0;
            $s += ($q->[$_] - $v->[$_]) ** 2 for 0..15; [$s, $_] } 0..1999;
        my @n = map { $_->[1] } (sort { $a->[0] <=> $b->[0] } @d)[0..9];
        print $g pack("l<l<10", 10, @n) }'
out=$("$bin" bench flat --base "$work/base2k.fvecs" --query "$work/query.fvecs" \
      --gt "$work/gt.ivecs" --nq 20 --json 2>&1)
check "flat: runs" [ $? -eq 0 ]
check "flat: exact search finds the exact neighbours" \
    at_least "$(field "$out" recall)" 1
check "flat: reports QPS" at_least "$(field "$out" qps)" 0.000001

out=$("$bin" bench ann $vecs --nbase 5000 --nq 50 --M 8 \
      --ef-construction 64 --ef 16,64 --json 2>&1)
check "ann: runs" [ $? -eq 0 ]
check "ann: a line per ef" [ "$(lines_of "$out" '"ef":')" -ge 2 ]
check "ann: recall at ef 64 >= 0.9" at_least \
    "$(field "$(printf '%s\n' "$out" | grep '"ef":64')" recall)" 0.9

out=$("$bin" bench ann $vecs --nbase 3000 --nq 30 --M 8 \
      --ef-construction 64 --ef 64 --codec sq8 --rerank 40 --json 2>&1)
check "ann with a codec: runs" [ $? -eq 0 ]
check "ann with a codec: recall >= 0.9" at_least \
    "$(field "$(printf '%s\n' "$out" | grep '"ef":64')" recall)" 0.9

# Copies: every row equal, or drawn from ten values, against distinct
# rows; each case's import leaves a database that passes qv_check, and
# a search for a row finds k = 10 of its copies.
out=$("$bin" bench duplicates --n 3000 --passes 1 --M 8 \
      --ef-construction 64 --write "$work" --json 2>&1)
check "duplicates: runs" [ $? -eq 0 ]
check "duplicates: a line per case" [ "$(lines_of "$out" '"case":')" -eq 3 ]
check "duplicates: every database passes check" \
    [ "$(lines_of "$out" '"check":true')" -eq 3 ]
for c in values-1 values-10; do
    check "duplicates $c: 10 hits at distance 0" \
        [ "$(field "$(printf '%s\n' "$out" | grep "\"$c\"")" hits_at_0)" = 10 ]
done
check "duplicates: --write leaves the rows as .fvecs" \
    [ "$(wc -c < "$work/values-10.fvecs")" -eq 60000 ]

# Single writes at two sizes, durable and not: a line per size and mode,
# every database passes check afterwards.
out=$("$bin" bench writes --n 1000,2000 --writes 10 --M 8 \
      --ef-construction 32 --check --json 2>&1)
check "writes: runs" [ $? -eq 0 ]
check "writes: a line per size and mode" \
    [ "$(lines_of "$out" '"bench":"writes"')" -eq 4 ]
check "writes: every database passes check" \
    [ "$(lines_of "$out" '"check":true')" -eq 4 ]

# The same on a database bench ann built (--db), the written vectors taken
# from a file (--vectors): a line per mode, check passes after each.
"$bin" bench ann $vecs --nbase 2000 --nq 10 --M 8 --ef-construction 32 \
    --ef 16 --db "$work/wdb" --json > /dev/null 2>&1
out=$("$bin" bench writes --db "$work/wdb" --vectors "$work/query.fvecs" \
      --writes 10 --check --json 2>&1)
check "writes --db: runs" [ $? -eq 0 ]
check "writes --db: a line per mode, n of the database" \
    [ "$(lines_of "$out" '"n":2000,"d":16')" -eq 2 ]
check "writes --db: check passes after each mode" \
    [ "$(lines_of "$out" '"check":true')" -eq 2 ]

# Churn: one round replacing every vector; the churned graph passes check
# and keeps a working recall beside the fresh build's.
out=$("$bin" bench churn --n 2000 --nq 50 --rounds 1 --M 8 \
      --ef-construction 64 --ef 64 --nosync --json 2>&1)
check "churn: runs" [ $? -eq 0 ]
check "churn: the churned graph passes check" \
    [ "$(lines_of "$out" '"check":true')" -eq 1 ]
check "churn: recall >= 0.8" at_least "$(field "$out" recall)" 0.8
check "churn: the fresh build's recall >= 0.8" \
    at_least "$(field "$out" recall_fresh)" 0.8

out=$("$bin" bench filter $vecs --labels "$work/labels.u8" --nq 50 \
      --json --db "$work/filter" 2>&1)
check "filter: runs" [ $? -eq 0 ]
check "filter: a line per selectivity" [ "$(lines_of "$out" '"filter":')" -eq 4 ]
for sel in 0.5 0.1 0.01 0.001; do
    line=$(printf '%s\n' "$out" | grep "\"selectivity\":$sel,")
    check "filter $sel: never fewer than 10 hits" \
        [ "$(field "$line" min_hits)" = 10 ]
    check "filter $sel: recall >= 0.9" at_least "$(field "$line" recall)" 0.9
done
check "filter: 0.1% scans its matches" \
    [ "$(printf '%s\n' "$out" | grep '"selectivity":0.001,' |
         grep -c '"plan":"exact scan of the matches"')" -eq 1 ]
out=$("$bin" bench filter $vecs --labels "$work/labels.u8" --nq 20 \
      --json --db "$work/filter" --case 10% 2>&1)
check "filter: --case runs one case on the --db of a run before" \
    [ "$(lines_of "$out" '"filter":')" -eq 1 ]
out=$("$bin" bench filter $vecs --labels "$work/labels.u8" --nbase 500 \
      --json --db "$work/filter" 2>&1)
check "filter: a --db holding another base is refused" \
    [ $? -ne 0 ] && printf '%s\n' "$out" | grep -q "remove it or pick another"

# A tiny MovieLens: users 1..60 like (rate 5) the movies of their own
# genre and dislike (rate 1) the others.
mkdir -p "$work/ml"
perl -e '
    open(my $m, ">", "'"$work"'/ml/movies.csv") or die;
    print $m "movieId,title,genres\n";
    for my $i (1..40) { printf $m "%d,Film %d (%d),%s\n", $i, $i,
        1990 + $i % 7, $i % 2 ? "Drama" : "Comedy" }
    open(my $r, ">", "'"$work"'/ml/ratings.csv") or die;
    print $r "userId,movieId,rating,timestamp\n";
    srand(3);
    for my $u (1..60) { for my $i (1..40) { next if rand() < 0.3;
        printf $r "%d,%d,%.1f,0\n", $u, $i, ($u % 2 == $i % 2) ? 5 : 1 } }'
out=$("$bin" bench embed --data "$work/ml" --method int8 --epochs 8 \
      --dim 8 --json 2>&1)
check "embed: runs" [ $? -eq 0 ]
check "embed: learns the planted taste (test AUC >= 0.7)" \
    at_least "$(field "$out" test_auc)" 0.7

# bench server against a quiverd on a free port (it prints the address
# it listens on when it is ready).
mkfifo "$work/ready"
"$srv" --db "$work/served" --listen 127.0.0.1:0 > "$work/ready" \
    2> "$work/quiverd.log" &
server_pid=$!
read -r line < "$work/ready"
out=$("$bin" bench server --connect "127.0.0.1:${line##*:}" \
      --clients 2 --seconds 1 --n 500 --dim 8 --op mixed --json 2>&1)
check "server: runs" [ $? -eq 0 ]
check "server: requests served, none failed" \
    [ "$(field "$out" errors)" = 0 ] && at_least "$(field "$out" requests)" 1
# bench cluster's measures work against any quiverd (tools/bench-cluster
# gives it cluster nodes)
out=$("$bin" bench cluster --connect "qv://127.0.0.1:${line##*:}" \
      --base "$work/base.fvecs" --n 300 --batch 100 --searches 50 2>&1)
check "cluster: runs" [ $? -eq 0 ]
check "cluster: imported and read" at_least "$(field "$out" rows_per_s)" 1 \
    && at_least "$(field "$out" search_qps)" 1
# readers side by side, both on the one address given
port=${line##*:}
out=$("$bin" bench cluster --connect "qv://127.0.0.1:$port,127.0.0.1:$port" \
      --readers 2 --base "$work/base.fvecs" --n 300 --searches 50 \
      --query "$work/query.fvecs" 2>&1)
check "cluster: readers run" [ $? -eq 0 ]
check "cluster: readers searched and got" \
    at_least "$(field "$out" search_qps)" 1 \
    && at_least "$(field "$out" get_qps)" 1
# 300 clustered 16-d rows: the index finds nearly every exact neighbour
recall=$(printf '%s\n' "$out" | sed -n 's/.*"recall":\[\([0-9.]*\),\([0-9.]*\)\].*/\1 \2/p')
check "cluster: each reader's recall against exact search" \
    at_least "${recall%% *}" 0.9 && at_least "${recall##* }" 0.9
out=$("$bin" bench cluster --connect "nowhere" --readers 2 --dim 8 \
      --n 300 2>&1)
check "cluster: readers refuse a URI without addresses" [ $? -ne 0 ]
# --collection: readers of a collection that holds only some of the rows
# (as a shard's does) count the gets that find nothing as answered
"$bin" bench cluster --connect "qv://127.0.0.1:$port" --collection part \
    --base "$work/base.fvecs" --n 100 --searches 10 > /dev/null 2>&1
out=$("$bin" bench cluster --connect "qv://127.0.0.1:$port" --readers 1 \
      --collection part --base "$work/base.fvecs" --n 300 --searches 50 2>&1)
check "cluster: readers of a part of the rows run" [ $? -eq 0 ]
found=$(field "$out" gets_found)
check "cluster: gets_found counts the rows the collection holds" \
    at_least "$found" 1 && [ "$found" -lt 50 ]
# --shards: only a cluster node makes sharded collections; readers take
# the collection as the import made it
out=$("$bin" bench cluster --connect "qv://127.0.0.1:$port" \
      --collection sharded --dim 8 --n 100 --shards 2 2>&1)
check "cluster: --shards refused by a quiverd without --cluster" \
    [ $? -ne 0 ]
out=$("$bin" bench cluster --connect "qv://127.0.0.1:$port" --readers 1 \
      --dim 8 --n 100 --shards 2 2>&1)
check "cluster: readers refuse --shards" [ $? -eq 2 ]
kill -TERM $server_pid
wait $server_pid
check "quiverd stopped cleanly" [ $? -eq 0 ]
server_pid=
echo "1..$n"
