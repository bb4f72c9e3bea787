# The quiver shell, scripted: every command in --json mode against an
# embedded database and again through quiverd, bad input of each kind
# (one clear message, exit status 1, nothing half-written), import of
# every format, export, backup; then one interactive session in a
# pseudo-terminal (completion, history). TAP output.
. "$(dirname "$0")/tap.sh"
bin=$QUIVER_BUILD/quiver
has() { printf '%s\n' "$1" | grep -qF -- "$2"; }
hasnt() { ! printf '%s\n' "$1" | grep -qF -- "$2"; }
smaller() { [ -n "$1" ] && [ -n "$2" ] && [ "$1" -lt "$2" ]; }

# A 2 x 3 .npy file (uint8 or float16) written byte by byte.
write_npy() {  # path, descr, data (printf escapes)
    header="{'descr': '$2', 'fortran_order': False, 'shape': (2, 3), }"
    while [ $(( (10 + ${#header} + 1) % 16 )) -ne 0 ]; do header="$header "; done
    len=$(( ${#header} + 1 ))
    { printf '\223NUMPY\001\000'
      printf "\\$(printf %03o $((len % 256)))\\$(printf %03o $((len / 256)))"
      printf '%s\n' "$header"
      printf "$3"; } > "$1"
}

suite() {  # label, target arguments...
    label=$1; shift
    q() { "$bin" "$@" --json; }
    j() { "$bin" "$TARGET" "$TARGET_ARG" --json "$@"; }
    TARGET=$1 TARGET_ARG=$2

    out=$(j -c 'create pts dim=3 metric=l2 M=8 ef_construction=50' \
            -c 'upsert pts a [1, 0, 0] {"tag": "x", "n": [1, 2]}' \
            -c 'upsert pts b [0, 1, 0]' \
            -c 'upsert pts "c d" [0, 0, 1]' \
            -c 'search pts [1, 0.1, 0] k=2 payload=true' \
            -c 'search pts [0, 0, 1] k=1 ef=16 exact=true' \
            -c 'get pts a' -c 'delete pts b' -c 'collections' \
            -c 'describe pts' -c 'help search' -c 'help' -c 'stats')
    rc=$?
    check "$label: good session exits 0" [ "$rc" -eq 0 ]
    check "$label: create, upsert, delete say ok" \
        [ "$(printf '%s\n' "$out" | grep -c '^{"ok":true}$')" -eq 5 ]
    check "$label: search JSON with payloads" has "$out" \
        '"payload":{"tag":"x","n":[1,2]}},{"id":"b","distance":1.8'
    check "$label: search hits in order" has "$out" '{"hits":[{"id":"a","distance":0.0'
    check "$label: exact search, quoted id" has "$out" '{"hits":[{"id":"c d","distance":0.0}]}'
    check "$label: get JSON" has "$out" '{"id":"a","vector":[1.0,0.0,0.0],"payload":{"tag":"x","n":[1,2]}}'
    check "$label: collections JSON" has "$out" '{"collections":[{"name":"pts","count":2,"dim":3,"metric":"l2"}]}'
    check "$label: describe JSON" has "$out" '{"name":"pts","count":2,"dim":3,"metric":"l2","codec":"none","codec_trained":true,"train_min":0,"code_bytes":12,"M":8,"ef_construction":50,"disk_bytes":'
    check "$label: help COMMAND" has "$out" '{"command":"search","usage":"search NAME'
    check "$label: help lists commands" has "$out" '"import NAME FILE'
    check "$label: help shows the vector as required" \
        has "$out" '"upsert NAME ID VECTOR [{json payload}]","get NAME ID"'
    check "$label: stats" has "$out" '{"collections":1,"documents":2,'
    check "$label: one JSON line per command" \
        [ "$(printf '%s\n' "$out" | wc -l)" -eq 13 ]
    out=$(j -c 'help table')
    check "$label: help table lists each subcommand" has "$out" \
        '"subcommands":["table create NAME rows=N dim=D [method=full|'
    check "$label: help table, all seven" has "$out" \
        '"table lookup NAME ids=[1, 2, ...]","table update NAME ids=[1, 2, ...] grads=[[..], [..], ...]","table describe NAME","table import NAME FILE [first=0]","table export NAME FILE","table drop NAME"]}'
    out=$("$bin" "$TARGET" "$TARGET_ARG" -c 'help table')
    check "$label: text help table, a line per subcommand" \
        [ "$(printf '%s\n' "$out" | grep -c '^  table ')" -eq 7 ]

    out=$(j -c 'search pts [1, 0, 0] k=5 where={"tag": "x"}' \
            -c 'count pts where={"n": {"$exists": true}}' -c 'count pts' \
            -c 'count pts where={"tag": {"$like": "x"}}')
    check "$label: filtered search" has "$out" '{"hits":[{"id":"a","distance":0.0}]}'
    check "$label: count where" has "$out" '{"count":1}'
    check "$label: count all" has "$out" '{"count":2}'
    check "$label: malformed filter named" has "$out" "unknown operator '\$like' at 'tag'"
    # search by a stored document's id: its vector is the query
    out=$(j -c 'search pts id=a k=2' -c 'search pts id="c d" k=1 exact=true' \
            -c 'search pts id=nope' -c 'search pts [1, 0, 0] id=a')
    check "$label: search id=ID" has "$out" '{"hits":[{"id":"a","distance":0.0},{"id":"c d","distance":2.0}]}'
    check "$label: search id= with a quoted id" has "$out" '{"hits":[{"id":"c d","distance":0.0}]}'
    check "$label: search id= of no document" has "$out" \
        '{"error":{"code":"NOT_FOUND","message":"document '"'nope'"' not found in collection '"'pts'"'"}}'
    check "$label: search with a vector and id=" has "$out" 'search takes 1 argument before its options, not 2'
    # partial=true changes nothing on a collection that is not sharded
    out=$(j -c 'search pts [1, 0, 0] k=1 partial=true')
    check "$label: partial search, no shard missing" has "$out" \
        '{"hits":[{"id":"a","distance":0.0}],"missing_shards":[]}'
    out=$(j -c 'scan pts where={"tag": "x"}' -c 'scan pts limit=1')
    check "$label: scan where" has "$out" '{"documents":[{"id":"a","payload":{"tag":"x","n":[1,2]}}],"cursor":null}'
    check "$label: scan pages with a cursor" has "$out" '"cursor":"a"}'

    # text mode: aligned tables
    out=$("$bin" "$TARGET" "$TARGET_ARG" -c 'search pts [1, 0, 0] k=1' -c collections)
    check "$label: text table" has "$out" "   1  a                                   0"

    # floats in their shortest form that reads back the same
    out=$(j -c 'create fl dim=3' -c 'upsert fl a [0.34558, 0.1, 1e-7]' \
            -c 'get fl a' \
            -c 'table create ft rows=4 dim=2 seed=7' -c 'table lookup ft ids=[1]')
    check "$label: get, shortest floats" has "$out" '"vector":[0.34558,0.1,1e-7]'
    check "$label: table lookup, no 9-digit noise" \
        hasnt "$(printf '%s\n' "$out" | grep rows)" '00000'
    out=$("$bin" "$TARGET" "$TARGET_ARG" -c 'get fl a' \
            -c 'search fl [0.34558, 0.1, 1.1e-7] k=1 where={} explain=true')
    check "$label: text get, shortest floats" has "$out" 'vector   [0.34558, 0.1, 1e-07]'
    check "$label: text explain, 9 digits at most" \
        hasnt "$(printf '%s\n' "$out" | grep explain)" '0000000'
    j -c 'drop fl' -c 'table drop ft' > /dev/null

    # a codec: code distances with rerank=0, describe, train refused
    out=$(j -c 'create cq dim=3 codec=f16' -c 'upsert cq a [1, 0, 0]' \
            -c 'upsert cq b [0, 1, 0]' -c 'search cq [1, 0, 0] k=1 rerank=0' \
            -c 'describe cq' -c 'drop cq' -c 'train pts')
    check "$label: codec search" has "$out" '{"hits":[{"id":"a","distance":0.0}]}'
    check "$label: codec described" has "$out" '"codec":"f16","codec_trained":true,"train_min":0,"code_bytes":6'
    check "$label: train without a codec" has "$out" "collection 'pts' has codec none, which learns nothing from the data"

    # payload indexes in describe, embedding tables in tables
    out=$(j -c 'describe pts' -c 'index pts tag type=keyword' \
            -c 'index pts n type=int' -c 'describe pts' -c 'tables' \
            -c 'table create tb rows=10 dim=2 method=int8' \
            -c 'table create ta rows=10 dim=2 optimizer=adagrad' -c 'tables' \
            -c 'unindex pts n' -c 'unindex pts tag' -c 'table drop ta' \
            -c 'table drop tb' -c 'describe nope')
    check "$label: describe, no indexes" has "$out" '"indexes":[]}'
    check "$label: describe lists indexes" has "$out" \
        '"indexes":[{"field":"n","type":"int"},{"field":"tag","type":"keyword"}]}'
    check "$label: tables, none" has "$out" '{"tables":[]}'
    check "$label: tables in name order" has "$out" \
        '{"tables":[{"name":"ta","method":"full","rows":10,"dim":2,"optimizer":"adagrad","param_bytes":80,"ratio":1.0,"updates":0},{"name":"tb","method":"int8",'
    check "$label: describe of no collection" has "$out" \
        '{"error":{"code":"NOT_FOUND","message":"collection '"'nope'"' does not exist"}}'
    out=$("$bin" "$TARGET" "$TARGET_ARG" -c 'index pts n type=int' \
            -c 'describe pts' -c 'table create tt rows=4 dim=2' -c tables \
            -c 'unindex pts n' -c 'table drop tt')
    check "$label: describe's text lists indexes" has "$out" 'indexes          n (int)'
    check "$label: tables' text" has "$out" '(1 table)'

    # bad input: each named, exit 1, nothing changed
    out=$(j -c 'frobnicate' -c 'create' -c 'create x' -c 'create x dim=-1' \
            -c 'create x dim=4 metric=manhattan' -c 'create x dim=4 codec=pq:8' \
            -c 'upsert pts' -c 'upsert pts e [1, "two", 3]' \
            -c 'upsert pts e [1, 2, 3] [4]' -c 'upsert pts e [1, 2] {}' \
            -c 'upsert pts e [1, 2, 3] {"a":1,"a":2}' -c 'search pts [1, 0, 0] k=abc' \
            -c 'search pts [1, 0, 0] colour=red' -c 'get pts nope' \
            -c 'get nope a' -c 'search pts [1, 0, 0' -c 'describe pts extra')
    rc=$?
    check "$label: bad session exits 1" [ "$rc" -eq 1 ]
    check "$label: unknown command" has "$out" '{"error":{"code":"INVALID","message":"unknown command '"'"'frobnicate'"'"'; type help"}}'
    check "$label: missing name" has "$out" 'create takes 1 argument before its options, not 0'
    check "$label: missing dim" has "$out" 'create needs dim=N'
    check "$label: malformed number" has "$out" 'dim must be a whole number from 1 to 16384, not '"'"'-1'"'"
    check "$label: unknown metric" has "$out" "unknown metric 'manhattan'"
    check "$label: codec that does not fit the dimension" has "$out" '"INVALID","message":"codec pq: the parameter must be a whole number from 1 to the dimension 4"'
    check "$label: missing vector" has "$out" 'upsert takes 3 arguments before its options, not 1'
    check "$label: vector not numbers" has "$out" 'vector element 1 is not a number'
    check "$label: payload not an object" has "$out" 'payload must be a JSON object, not '"'"'[4]'"'"
    check "$label: wrong dimension" has "$out" '{"error":{"code":"DIMENSION","message":"document 0: vector has dimension 2; collection '"'"'pts'"'"' has 3"}}'
    check "$label: duplicate key" has "$out" 'duplicate'
    check "$label: bad k" has "$out" "k must be a whole number from 1 to 10000, not 'abc'"
    check "$label: unknown option" has "$out" "unknown option 'colour'"
    check "$label: missing document" has "$out" '{"error":{"code":"NOT_FOUND","message":"document '"'"'nope'"'"' not found in collection '"'"'pts'"'"'"}}'
    check "$label: missing collection" has "$out" "collection 'nope' does not exist"
    check "$label: unterminated vector" has "$out" 'bad JSON at'
    check "$label: extra argument" has "$out" 'describe takes 1 argument before its options, not 2'
    check "$label: every bad command answered once" \
        [ "$(printf '%s\n' "$out" | grep -c '"error"')" -eq 17 ]
    out=$(j -c 'describe pts' -c 'get pts e')
    check "$label: bad input changed nothing" has "$out" '"count":2,'
    check "$label: nothing half-written" has "$out" '"NOT_FOUND"'
    check "$label: an ordinary collection shows no shards" hasnt "$out" '"shards"'

    # shards: 0 written out is refused (0 is "not given"); a sharded
    # collection needs a cluster node, which neither target is
    out=$(j -c 'create x dim=4 shards=0' -c 'create x dim=4 replicas=0' \
            -c 'create x dim=4 shards=2' -c 'create x dim=4 shards=2 replicas=3' \
            -c 'create x dim=4 shards=257' -c 'create x dim=4 replicas=2' \
            -c 'help create')
    rc=$?
    check "$label: refused shards exit 1" [ "$rc" -eq 1 ]
    check "$label: shards=0 refused" has "$out" '{"error":{"code":"INVALID","message":"shards must be a whole number from 1 to 256, not '"'"'0'"'"'"}}'
    check "$label: replicas=0 refused" has "$out" "replicas must be a whole number from 1 to 16, not '0'"
    check "$label: shards too many" has "$out" "shards must be a whole number from 1 to 256, not '257'"
    check "$label: shards need a cluster node" [ "$(printf '%s\n' "$out" | grep -cF '{"error":{"code":"UNSUPPORTED","message":"shards and replicas need a cluster node (quiverd --cluster); this database is a single node"}}')" -eq 2 ]
    check "$label: replicas need shards" has "$out" '"INVALID","message":"replicas need shards: replicas is 2 but shards is 0'
    check "$label: help create names shards" has "$out" '[shards=S [replicas=R]]'
    out=$(j -c 'describe x')
    check "$label: no sharded collection made" has "$out" "collection 'x' does not exist"
    out=$("$bin" "$TARGET" "$TARGET_ARG" -c 'create x dim=4 shards=2' 2>&1)
    rc=$?
    check "$label: text: shards need a cluster node, exit 1" [ "$rc" -eq 1 ]
    check "$label: text: the message" has "$out" 'error: UNSUPPORTED: shards and replicas need a cluster node (quiverd --cluster); this database is a single node'

    # import and export, every format
    j -c 'create big dim=4' >/dev/null
    awk 'BEGIN { for (i = 0; i < 6000; i++)
        if (i == 4999) printf "{\"id\":\"r%d\",\"vector\":[1,2,3]}\n", i
        else printf "{\"id\":\"r%d\",\"vector\":[%d,1,2,3],\"payload\":{\"i\":%d}}\n", i, i, i
    }' > "$work/rows.jsonl"
    out=$(j import big "$work/rows.jsonl" batch=1000)
    rc=$?
    check "$label: import stops at the bad row" [ "$rc" -eq 1 ]
    check "$label: the bad line is named" has "$out" 'line 5000: vector has dimension 3, expected 4'
    check "$label: the rows before it stay" has "$out" '4999 rows imported before it stay'
    printf '{"id":"one","vector":[1,2,3,4]}\n{"id":"two","vector":[1]}\n' > "$work/one.jsonl"
    out=$("$bin" "$TARGET" "$TARGET_ARG" -c "import big $work/one.jsonl" \
            -c 'delete big where={"nope": 1}' -c 'delete big where={"i": 1}' 2>&1)
    check "$label: 1 row, singular" has "$out" '(1 row imported before it stays)'
    check "$label: 0 documents, plural" has "$out" 'deleted 0 documents'
    check "$label: 1 document, singular" \
        [ "$(printf '%s\n' "$out" | grep -c '^deleted 1 document$')" -eq 1 ]
    j -c 'delete big one' -c 'upsert big r1 [1, 1, 2, 3] {"i": 1}' > /dev/null
    out=$(j -c 'cluster' -c 'cluster x=1')
    check "$label: cluster without a subcommand refused" has "$out" \
        'cluster takes 1 argument before its options, not 0'
    check "$label: cluster with only an option refused" has "$out" \
        "cluster: unknown option 'x'"
    out=$(j describe big)
    check "$label: 4999 rows in the collection" has "$out" '"count":4999,'
    sed -i '5000s/.*/{"id":"r4999","vector":[4999,1,2,3]}/' "$work/rows.jsonl"
    out=$(j import big "$work/rows.jsonl" threads=1)
    if [ "$label" = remote ]; then
        check "$label: threads= is the server's" has "$out" 'quiverd --threads'
        out=$(j import big "$work/rows.jsonl")
    fi
    check "$label: re-running the import is safe" has "$out" '{"rows":6000,'
    out=$(j -c 'describe big' -c 'get big r123' -c 'export big '"$work/big.fvecs" \
            -c 'export big '"$work/big.jsonl")
    check "$label: all 6000 rows, no duplicates" has "$out" '"count":6000,'
    check "$label: payload imported" has "$out" '"payload":{"i":123}}'
    check "$label: export fvecs" has "$out" '{"rows":6000,"file":"'"$work/big.fvecs"'"}'
    check "$label: export jsonl" [ "$(wc -l < "$work/big.jsonl")" -eq 6000 ]
    check "$label: other ids exported in string order" \
        [ "$(head -3 "$work/big.jsonl" | sed 's/{"id":"\([^"]*\)".*/\1/' | tr '\n' ' ')" = "r0 r1 r10 " ]
    j -c 'create again dim=4' -c 'create vecs dim=4' >/dev/null
    out=$(j -c "import again $work/big.jsonl" -c "import vecs $work/big.fvecs" \
            -c 'get again r77' -c 'search vecs [77, 1, 2, 3] k=1 exact=true')
    check "$label: jsonl round trip" has "$out" '{"id":"r77","vector":[77.0,1.0,2.0,3.0],"payload":{"i":77}}'
    check "$label: fvecs round trip (ids are row numbers)" has "$out" '"distance":0.0}]}'
    # row numbers as ids: export in numeric order, an fvecs round trip
    # keeps the rows' order
    awk 'BEGIN { for (i = 0; i < 12; i++)
        printf "{\"id\":\"%d\",\"vector\":[%d,0,0,0]}\n", i, i }' > "$work/rows12.jsonl"
    out=$(j -c 'create r12 dim=4' -c "import r12 $work/rows12.jsonl" \
            -c "export r12 $work/r12.fvecs" -c "export r12 $work/r12.jsonl" \
            -c 'create f12 dim=4' -c "import f12 $work/r12.fvecs" \
            -c "export f12 $work/f12.fvecs" -c 'drop r12' -c 'drop f12')
    check "$label: row-number ids exported in numeric order" \
        [ "$(sed 's/{"id":"\([0-9]*\)".*/\1/' "$work/r12.jsonl" | tr '\n' ' ')" = \
          "0 1 2 3 4 5 6 7 8 9 10 11 " ]
    check "$label: fvecs import, export: the same rows in the same order" \
        cmp -s "$work/r12.fvecs" "$work/f12.fvecs"
    check "$label: ... all 12" has "$out" '{"rows":12,"file":"'"$work/f12.fvecs"'"}'
    head -c 1010 "$work/big.fvecs" > "$work/cut.fvecs"  # 50 rows and a half
    out=$(j -c 'create cut dim=4' -c "import cut $work/cut.fvecs" -c 'describe cut')
    check "$label: truncated file named with its row" has "$out" "$work/cut.fvecs: row 50: truncated"
    check "$label: rows before a truncated row stay" has "$out" '"count":50,'
    out=$(j import cut "$work/nope.fvecs")
    check "$label: missing file" has "$out" 'No such file or directory'
    out=$(j import cut "$work/rows.txt")
    check "$label: unknown format" has "$out" "unknown format 'txt'"
    out=$(j export big "$work/no/such/dir/out.jsonl")
    check "$label: failed export writes nothing" [ ! -e "$work/no/such/dir/out.jsonl" ]
    check "$label: failed export says why" has "$out" '"code":"IO"'
    write_npy "$work/u8.npy" '|u1' '\001\002\003\004\005\006'
    write_npy "$work/f16.npy" '<f2' '\000\074\000\100\000\102\000\104\000\105\000\106'
    out=$(j -c 'create n3 dim=3' -c "import n3 $work/u8.npy" -c 'get n3 1' \
            -c 'create h3 dim=3' -c "import h3 $work/f16.npy" -c 'get h3 1')
    check "$label: npy uint8" has "$out" '{"id":"1","vector":[4.0,5.0,6.0],"payload":null}'
    check "$label: npy float16" has "$out" '{"id":"1","vector":[4.0,5.0,6.0],"payload":null}'
    z='\000\000\000\000\000\000'
    write_npy "$work/f64.npy" '<f8' "$z\360\077$z\000\100$z\010\100$z\020\100$z\024\100$z\030\100"
    write_npy "$work/huge.npy" '<f8' "$z\360\077\377\377\377\377\377\377\357\177$z\010\100$z\020\100$z\024\100$z\030\100"
    write_npy "$work/i64.npy" '<i8' "$z$z$z$z$z$z$z$z$z$z$z$z"
    out=$(j -c 'create d3 dim=3' -c "import d3 $work/f64.npy" -c 'get d3 1' \
            -c "import d3 $work/huge.npy" -c "import d3 $work/i64.npy" \
            -c 'table create t3 rows=4 dim=3' -c "table import t3 $work/f64.npy first=1" \
            -c 'table lookup t3 ids=[2]' -c 'table drop t3' -c 'drop d3')
    check "$label: npy float64, made float32" has "$out" '{"id":"1","vector":[4.0,5.0,6.0],"payload":null}'
    check "$label: npy float64 beyond float range named" has "$out" \
        "huge.npy: row 0, element 1: 1.79769e+308 is beyond the range of float32 (0 rows imported before it stay)"
    check "$label: npy dtype named, no header dump" has "$out" \
        "i64.npy: dtype '<i8' is not supported; use float64, float32, float16 or uint8, little-endian\"}}"
    check "$label: table import of npy" has "$out" '{"loaded":2}'
    check "$label: table import of npy, the rows" has "$out" '{"rows":[[4.0,5.0,6.0]]}'
    # a server takes only the name of a new entry of its --backup-dir
    if [ "$label" = remote ]; then
        bk=backup-$label bkdir=$work/backups/backup-$label
    else
        bk=$work/backup-$label bkdir=$work/backup-$label
    fi
    out=$(j -c "backup $bk" -c "backup $bk")
    check "$label: backup" has "$out" '{"ok":true,"dir":"'"$bk"'"}'
    check "$label: backup refuses to overwrite" has "$out" 'already'
    out=$("$bin" --db "$bkdir" --json describe big)
    check "$label: the backup opens as a database" has "$out" '"count":6000,'
    out=$(j -c 'drop big' -c 'drop again' -c compact)
    before=$(printf '%s\n' "$out" | sed -n 's/.*"file_bytes_before":\([0-9]*\).*/\1/p')
    after=$(printf '%s\n' "$out" | sed -n 's/.*"file_bytes_after":\([0-9]*\).*/\1/p')
    check "$label: compact gives space back" smaller "$after" "$before"
    out=$(j -c 'describe vecs' -c 'search vecs [77, 1, 2, 3] k=1 exact=true')
    check "$label: data intact after compact" has "$out" '"count":6000,'
    out=$(printf 'collections\nquit\ncollections\n' | "$bin" "$TARGET" "$TARGET_ARG" --json)
    check "$label: stdin script stops at quit" [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ]
}

suite embedded --db "$work/db"

# options: getopt_long's forms, before the command only
out=$("$bin" --db="$work/db" --json -c collections)
check "options: --db=DIR" has "$out" '{"name":"pts",'
out=$("$bin" -V)
check "options: -V prints the version" has "$out" "quiver "
check "options: --version is -V" [ "$("$bin" --version)" = "$out" ]
out=$("$bin" -h)
check "options: -h prints the usage" has "$out" "usage: quiver"
out=$("$bin" --frobnicate 2>&1)
rc=$?
check "options: unknown option, exit 2" [ "$rc" -eq 2 ]
check "options: unknown option named" has "$out" "quiver: unknown option '--frobnicate'"
out=$("$bin" -x 2>&1)
check "options: unknown short option named" has "$out" "unknown option '-x'"
out=$("$bin" --db 2>&1)
check "options: a missing value named" has "$out" "quiver: a value is missing after '--db'"
out=$("$bin" --db "$work/db" describe pts --json 2>&1)
rc=$?
check "options: a word after the command is the command's" has "$out" \
    'describe takes 1 argument before its options, not 2'
check "options: ... and the command fails" [ "$rc" -eq 1 ]

# a database that does not open: in --json mode one error object too
out=$("$bin" --connect 127.0.0.1:1 --json -c 'count pts' 2>/dev/null)
rc=$?
check "--json: a connection failure is one JSON error" has "$out" \
    '{"error":{"code":"CONNECTION","message":"cannot connect to 127.0.0.1:1: '
check "--json: ... on one line" [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ]
check "--json: ... exit 1" [ "$rc" -eq 1 ]
out=$("$bin" --db qv://h:x --json -c 'count pts' 2>/dev/null)
check "--json: a bad URI is one JSON error" has "$out" '{"error":{"code":"INVALID","message":"'"'qv://h:x'"' is not qv://HOST[:PORT]'
out=$("$bin" --connect 127.0.0.1:1 -c 'count pts' 2>&1)
check "text: a connection failure on stderr" has "$out" 'quiver: cannot connect to 127.0.0.1:1: '

# QUIVER_DB: the database when neither --db nor --connect is given
out=$(QUIVER_DB="$work/db" "$bin" --json -c 'describe pts')
check "QUIVER_DB names the database" has "$out" '{"name":"pts",'
out=$(QUIVER_DB="$work/elsewhere" "$bin" --db "$work/db" --json -c 'describe pts')
check "--db wins over QUIVER_DB" has "$out" '{"name":"pts",'
check "QUIVER_DB unused under --db" [ ! -e "$work/elsewhere" ]
out=$(QUIVER_DB=qv://127.0.0.1:1 "$bin" --json -c 'describe pts')
check "QUIVER_DB takes a URI" has "$out" 'cannot connect to 127.0.0.1:1'

# --bail: the first failure ends the -c commands, or the script on stdin
out=$("$bin" --db "$work/db" --json -c 'count pts' -c 'get pts nope' -c 'count pts')
check "no --bail: every command runs" [ "$(printf '%s\n' "$out" | wc -l)" -eq 3 ]
out=$("$bin" --db "$work/db" --json --bail -c 'count pts' -c 'get pts nope' \
        -c 'count pts')
rc=$?
check "--bail: -c stops at the failure" [ "$(printf '%s\n' "$out" | wc -l)" -eq 2 ]
check "--bail: exit 1" [ "$rc" -eq 1 ]
out=$(printf 'count pts\nfrobnicate\ncount pts\n' | "$bin" --db "$work/db" --json --bail)
rc=$?
check "--bail: stdin stops at the failure" [ "$(printf '%s\n' "$out" | wc -l)" -eq 2 ]
check "--bail: stdin, exit 1" [ "$rc" -eq 1 ]
out=$(printf 'count pts\ncount pts\n' | "$bin" --db "$work/db" --json --bail)
rc=$?
check "--bail: no failure, every line runs" [ "$(printf '%s\n' "$out" | wc -l)" -eq 2 ]
check "--bail: no failure, exit 0" [ "$rc" -eq 0 ]

# the same through quiverd
mkfifo "$work/ready"
mkdir "$work/backups"
"$QUIVER_BUILD/quiverd" --db "$work/served" --listen 127.0.0.1:0 \
    --backup-dir "$work/backups" > "$work/ready" 2> "$work/quiverd.log" &
server_pid=$!
read -r line < "$work/ready"
port=${line##*:}
suite remote --connect "127.0.0.1:$port"
kill -TERM $server_pid
wait $server_pid
check "quiverd stopped cleanly" [ $? -eq 0 ]
server_pid=

# interactive, in a pseudo-terminal: completion and history
if command -v script >/dev/null; then
    printf 'create tabs dim=2\ndesc\tta\t\n\033[A\nquit\n' > "$work/keys"
    QUIVER_HISTORY="$work/history" script -qfec "$bin --db $work/pty" /dev/null \
        < "$work/keys" > "$work/pty.out" 2>&1
    out=$(cat "$work/pty.out")
    check "pty: prompt" has "$out" "quiver> "
    check "pty: tab completes the command and the collection" \
        [ "$(grep -c 'ef_construction  200' "$work/pty.out")" -eq 2 ]
    check "pty: history file kept" grep -qF 'describe\040tabs' "$work/history"
    # progress lines on a terminal: export of a collection's count, a
    # jsonl import by the share of the file read
    script -qfec "$bin --db $work/ptyp -c 'create pg dim=2' \
        -c 'upsert pg 0 [1, 2]' -c 'upsert pg 1 [3, 4]' \
        -c 'export pg $work/pg.jsonl' -c 'import pg $work/pg.jsonl'" /dev/null \
        > "$work/progress.out" 2>&1
    check "pty: export shows its progress" \
        grep -qF 'export pg: 2/2 rows (100%)' "$work/progress.out"
    check "pty: jsonl import shows the share of the file read" \
        grep -qF 'import pg: 2 rows (100%)' "$work/progress.out"
else
    echo "not ok $((n + 1)) # SKIP script(1) not installed"; n=$((n + 1))
fi
echo "1..$n"
