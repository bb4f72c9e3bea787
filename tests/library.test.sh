# The release shared library (build/libquiver.so*): named for its version,
# with SONAME libquiver.so.MAJOR, and exporting the calls db/quiver.h
# declares (QV_API) and nothing else: no internal symbol (hnsw_*, st_*,
# codec_*, qv_malloc, ...) and none of protobuf-c's generated code. TAP
# output.
. "$(dirname "$0")/tap.sh"
top=$QUIVER_TOP
version=$(sed -n 's/^#define QV_VERSION "\(.*\)"$/\1/p' "$top/db/quiver.h")
major=${version%%.*}
lib=$top/build/libquiver.so.$version

check "QV_VERSION is MAJOR.MINOR.PATCH ($version)" \
    sh -c 'echo "$1" | grep -Eq "^[0-9]+\.[0-9]+\.[0-9]+$"' _ "$version"
check "libquiver.so.$version is built, a file" \
    sh -c '[ -f "$1" ] && [ ! -L "$1" ]' _ "$lib"
check "libquiver.so.$major links to it" \
    [ "$(readlink "$top/build/libquiver.so.$major")" = "libquiver.so.$version" ]
check "libquiver.so links to libquiver.so.$major" \
    [ "$(readlink "$top/build/libquiver.so")" = "libquiver.so.$major" ]
soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
check "SONAME is libquiver.so.$major ($soname)" \
    [ "$soname" = "libquiver.so.$major" ]

nm -D --defined-only "$lib" | awk '{print $NF}' | sort -u >"$work/exported"
# Every declaration in quiver.h that starts a line with QV_API.
sed -n 's/^QV_API .*[ *]\(qv_[a-z0-9_]*\)(.*/\1/p' "$top/db/quiver.h" |
    sort -u >"$work/declared"
grep -v '^qv_' "$work/exported" >"$work/foreign"
check "every exported symbol starts with qv_ ($(wc -l <"$work/foreign") do not)" \
    [ ! -s "$work/foreign" ]
sed 's/^/#   /' "$work/foreign" | head -20
check "quiver.h declares $(wc -l <"$work/declared") calls" \
    [ "$(wc -l <"$work/declared")" -gt 40 ]
check "the exported symbols are exactly quiver.h's calls" \
    cmp -s "$work/exported" "$work/declared"
diff "$work/declared" "$work/exported" | grep '^[<>]' | sed 's/^/#   /'
echo "1..$n"
