# `make install` into a scratch DESTDIR with PREFIX=/opt/quiver, as a
# package build does, then what a user of the installed tree does:
# examples/embedded.c built with pkg-config alone (shared, then static),
# run against the installed library; the man pages and the systemd unit
# checked (systemd-analyze verify, when there is one); `make uninstall`.
# Everything is under $work, removed at exit whatever happens. TAP output.
. "$(dirname "$0")/tap.sh"
top=$QUIVER_TOP
prefix=/opt/quiver
dest=$work/dest
root=$dest$prefix
version=$(sed -n 's/^#define QV_VERSION "\(.*\)"$/\1/p' "$top/db/quiver.h")
major=${version%%.*}
# A make of our own, not a part of the one that may have run the suite.
unset MAKEFLAGS MFLAGS MAKELEVEL

# Runs "$@" with its output in $work/log, shown (as TAP comments) only
# when it fails.
quiet() {
    "$@" >"$work/log" 2>&1 && return 0
    sed 's/^/#   /' "$work/log"
    return 1
}
install_tree() {
    quiet make -C "$top" --no-print-directory install DESTDIR="$dest" \
        PREFIX="$prefix"
}
check "make install DESTDIR=... PREFIX=$prefix" install_tree
for f in bin/quiver sbin/quiverd include/quiver.h lib/libquiver.a \
         "lib/libquiver.so.$version" lib/pkgconfig/quiver.pc \
         share/man/man1/quiver.1 share/man/man3/libquiver.3 \
         share/man/man8/quiverd.8 lib/systemd/system/quiverd.service \
         lib/sysusers.d/quiver.conf etc/quiver/quiverd.env; do
    check "installed $f" [ -f "$root/$f" ]
done
check "lib/libquiver.so.$major -> libquiver.so.$version" \
    [ "$(readlink "$root/lib/libquiver.so.$major")" = "libquiver.so.$version" ]
check "lib/libquiver.so -> libquiver.so.$major" \
    [ "$(readlink "$root/lib/libquiver.so")" = "libquiver.so.$major" ]
check "nothing installed outside PREFIX" \
    [ "$(cd "$dest" && find . -mindepth 1 -maxdepth 2)" = "./opt
./opt/quiver" ]

# pkg-config reads the installed quiver.pc, whose paths name $prefix;
# PKG_CONFIG_SYSROOT_DIR puts $dest in front of them, as for any
# package staged in a DESTDIR.
export PKG_CONFIG_PATH="$root/lib/pkgconfig" PKG_CONFIG_LIBDIR=
export PKG_CONFIG_SYSROOT_DIR="$dest"
check "pkg-config --modversion quiver is $version" \
    [ "$(pkg-config --modversion quiver)" = "$version" ]
cflags=$(pkg-config --cflags quiver)
libs=$(pkg-config --libs quiver)
check "pkg-config's flags name the installed tree" \
    sh -c 'echo "$1" | grep -q -- "-I$2/include" &&
           echo "$1" | grep -q -- "-L$2/lib"' _ "$cflags $libs" "$root"

# The example with those flags alone: no -I or -L into the source tree.
example=$top/examples/embedded.c
check "examples/embedded.c builds with pkg-config --cflags --libs" \
    quiet cc -o "$work/embedded" "$example" $cflags $libs
check "the program needs libquiver.so.$major" \
    sh -c 'readelf -d "$1" | grep -q "NEEDED.*\[libquiver.so.$2\]"' _ \
    "$work/embedded" "$major"
out=$(LD_LIBRARY_PATH="$root/lib" "$work/embedded" "$work/db1")
check "it runs against the installed library" \
    sh -c 'echo "$1" | grep -q "nearest to the query"' _ "$out"
check "the loader took the installed library" \
    sh -c 'LD_LIBRARY_PATH="$1/lib" ldd "$2" |
           grep -q "libquiver.so.$3 => $1/lib/"' _ "$root" "$work/embedded" \
    "$major"

# Static: libquiver.a by name, the libraries it needs from Libs.private.
static_libs=$(pkg-config --static --libs quiver | sed 's/-lquiver\b/-l:libquiver.a/')
check "it links libquiver.a with pkg-config --static --libs" \
    quiet cc -o "$work/embedded-static" "$example" $cflags $static_libs
check "the static program needs no libquiver.so" \
    sh -c '! readelf -d "$1" | grep -q "libquiver"' _ "$work/embedded-static"
out=$("$work/embedded-static" "$work/db2")
check "and runs" sh -c 'echo "$1" | grep -q "nearest to the query"' _ "$out"

check "quiver --version is $version" \
    [ "$(LD_LIBRARY_PATH= "$root/bin/quiver" --version)" = "quiver $version" ]
# (C.UTF-8, built into glibc: man warns of a locale that is not there.)
for page in man1/quiver.1 man3/libquiver.3 man8/quiverd.8; do
    check "man $page formats without warnings" env LC_ALL=C.UTF-8 sh -c \
        'man --warnings -l "$1" 2>&1 >/dev/null | grep -q . && exit 1;
         man -l "$1" >/dev/null' _ "$root/share/man/$page"
done
# Every option quiverd's usage names is in its man page.
for opt in $("$root/sbin/quiverd" --help | grep -o -- '--[a-z-]*' | sort -u); do
    check "quiverd(8) documents $opt" \
        grep -qF -- "$(echo "$opt" | sed 's/-/\\-/g')" \
        "$root/share/man/man8/quiverd.8"
done

# The unit names the installed paths ($prefix/...); verify a copy of it
# whose paths point into $dest, where those files are, so that the
# binary it runs and the man page it cites are found.
unit=$root/lib/systemd/system/quiverd.service
check "the unit runs $prefix/sbin/quiverd with QUIVERD_ARGS" \
    grep -qx "ExecStart=$prefix/sbin/quiverd \$QUIVERD_ARGS" "$unit"
check "the unit reads $prefix/etc/quiver/quiverd.env" \
    grep -qx "EnvironmentFile=-$prefix/etc/quiver/quiverd.env" "$unit"
if command -v systemd-analyze >/dev/null; then
    mkdir "$work/unit"
    sed "s|=\(-\{0,1\}\)$prefix/|=\1$root/|" "$unit" \
        >"$work/unit/quiverd.service"
    # It warns of an unknown key and still exits 0: no output either.
    verify() {
        quiet env MANPATH="$root/share/man" systemd-analyze verify \
            "$work/unit/quiverd.service" || return 1
        [ ! -s "$work/log" ] && return 0
        sed 's/^/#   /' "$work/log"
        return 1
    }
    check "systemd-analyze verify accepts quiverd.service" verify
else
    n=$((n + 1))
    echo "not ok $n - systemd-analyze verify # SKIP no systemd-analyze here"
fi

# A second install keeps an edited config; uninstall leaves only it.
echo 'QUIVERD_ARGS="--db /var/lib/quiver/data --threads 2"' \
    >"$root/etc/quiver/quiverd.env"
reinstall_keeps_config() {
    install_tree && grep -q -- "--threads 2" "$root/etc/quiver/quiverd.env"
}
check "make install again keeps the edited quiverd.env" reinstall_keeps_config
make -C "$top" --no-print-directory uninstall DESTDIR="$dest" \
    PREFIX="$prefix" >/dev/null 2>&1
check "make uninstall removes every file but the config" \
    [ "$(cd "$dest" && find . ! -type d)" = "./opt/quiver/etc/quiver/quiverd.env" ]
echo "1..$n"
