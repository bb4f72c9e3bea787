# Quiver build. `make` builds the release library and tools into build/,
# `make test` builds everything again with ASan+UBSan into build/asan/ and
# runs the whole suite, `make run` opens the shell on ./data.
#
# Missing Debian packages are installed by `make deps` when we are root;
# otherwise it says which are missing. `make run` and `make test` run it
# first; nothing else does, so `make` (and `make check`: the suite
# without `make deps`) never calls apt-get.

CC      ?= cc
ARCH    ?= -march=native
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wno-unused-parameter
CSTD    := -std=c11 -D_GNU_SOURCE
# Every include is a path from the top (`#include "storage/env.h"`), so
# the path shows the layer; tools/check-layers holds them to it.
INC     := -I. -Ibuild/gen
PKGS    := lmdb jansson
LIBS    := -llmdb -luring -ljansson -lprotobuf-c -lxxhash -lroaring -lssl -lcrypto \
           -lm -lpthread
TESTLIBS := -lcmocka

# Debian packages the build, the tests and the tools need (man-db: the
# install test formats the man pages).
DEB_PKGS := build-essential pkg-config liblmdb-dev lmdb-utils liburing-dev \
            libsimde-dev libprotobuf-c-dev protobuf-c-compiler libjansson-dev \
            libcmocka-dev libedit-dev clang libclang-rt-14-dev libxxhash-dev \
            libroaring-dev libssl-dev python3 nats-server libnats-dev \
            man-db

# -fvisibility=hidden: the shared library exports only what db/quiver.h
# marks QV_API (tests/library.test.sh checks it).
RELEASE_CFLAGS := $(CSTD) $(WARN) -O3 $(ARCH) -fPIC -fvisibility=hidden -g
ASAN_CFLAGS    := $(CSTD) $(WARN) -O1 $(ARCH) -fPIC -g -fno-omit-frame-pointer \
                  -fsanitize=address,undefined -fno-sanitize-recover=all \
                  -DQV_CHECKS
ASAN_LDFLAGS   := -fsanitize=address,undefined

LIB_SRC := common/alloc.c common/check.c common/json.c common/token.c \
           common/utf8.c \
           storage/env.c storage/reader.c \
           ann/distance.c ann/topk.c ann/hnsw.c ann/codec.c ann/embed.c \
           db/db.c db/core/error.c db/core/names.c db/core/validate.c \
           db/core/results.c db/core/filter.c \
           db/engine/store/records.c db/engine/store/txn.c db/engine/store/catalog.c \
           db/engine/store/pindex.c db/engine/graphs/graph.c \
           db/engine/collections/collection.c \
           db/engine/collections/document.c db/engine/search/search.c \
           db/engine/tables/table.c db/engine/admin/admin.c \
           db/engine/admin/check.c db/engine/engine.c \
           wire/proto/frame.c wire/proto/inspect.c wire/proto/ops.c \
           wire/proto/stream.c \
           wire/remote/remote.c build/gen/wire/quiver.pb-c.c
CLUSTER_SRC := wire/cluster/log.c wire/cluster/node.c wire/cluster/shards.c
SERVER_SRC := wire/server/dispatch.c wire/server/router.c \
              wire/server/table_router.c \
              wire/server/placement.c wire/server/server.c \
              wire/server/quiverd.c \
              $(CLUSTER_SRC)
# quiverd and the cluster's tests talk to NATS (libnats-dev)
SERVER_LIBS := $(LIBS) -lnats
CLI_SRC := cli/main.c cli/command.c cli/shell.c cli/bench.c cli/bench_flat.c cli/bench_ann.c \
           cli/bench_server.c cli/bench_filter.c cli/bench_embed.c \
           cli/bench_duplicates.c cli/bench_writes.c cli/bench_churn.c cli/bench_cluster.c \
           cli/transfer.c cli/vecfile.c cli/table_cmd.c
TEST_BINS := test_distance test_topk test_storage test_api test_persist test_vecfile \
             test_hnsw test_server test_corrupt test_crash test_faults \
             test_filter test_codec test_table test_tls test_format \
             test_cluster_log test_cluster

# The version has one source, QV_VERSION in db/quiver.h; the shared
# library is libquiver.so.VERSION with SONAME libquiver.so.MAJOR.
VERSION := $(shell sed -n 's/^\#define QV_VERSION "\(.*\)"$$/\1/p' db/quiver.h)
SOMAJOR := $(firstword $(subst ., ,$(VERSION)))
SONAME  := libquiver.so.$(SOMAJOR)

B  := build
BA := build/asan
BT := build/tsan
# What the ThreadSanitizer build makes (rules below).
TSAN_TESTS := test_api test_persist test_server test_cluster
TSAN_BINS := $(TSAN_TESTS:%=$(BT)/tests/%) $(BT)/quiverd $(BT)/quiver

LIB_OBJ   := $(LIB_SRC:%.c=$(B)/%.o)
LIB_OBJ_A := $(LIB_SRC:%.c=$(BA)/%.o)
CLI_OBJ   := $(CLI_SRC:%.c=$(B)/%.o)
CLI_OBJ_A := $(CLI_SRC:%.c=$(BA)/%.o)
SERVER_OBJ   := $(SERVER_SRC:%.c=$(B)/%.o)
SERVER_OBJ_A := $(SERVER_SRC:%.c=$(BA)/%.o)
GEN := build/gen/wire/quiver.pb-c.c build/gen/wire/quiver.pb-c.h

.PHONY: all deps run test check install uninstall clean fuzz fuzz-smoke \
        fuzz-long fuzz-seeds crash-test tsan cluster-test cluster-crash-test \
        cluster-scenario-test
# Keep intermediate objects (make would delete them after linking tests).
.SECONDARY:

all: $(B)/libquiver.a $(B)/libquiver.so $(B)/quiver $(B)/quiverd $(B)/embedded

deps:
	@./tools/install-deps $(DEB_PKGS)

# The protocol's C code is generated from wire/quiver.proto at build time.
$(GEN): wire/quiver.proto
	@mkdir -p build/gen
	protoc-c --c_out=build/gen wire/quiver.proto

# Everything may include the generated header.
$(LIB_OBJ) $(LIB_OBJ_A) $(CLI_OBJ) $(CLI_OBJ_A) $(SERVER_OBJ) $(SERVER_OBJ_A): $(GEN)

$(B)/build/gen/%.o: build/gen/%.c
	@mkdir -p $(dir $@)
	@echo "CC $<"
	@$(CC) $(RELEASE_CFLAGS) $(INC) -Wno-missing-prototypes -c $< -o $@

$(BA)/build/gen/%.o: build/gen/%.c
	@mkdir -p $(dir $@)
	@echo "CC [asan] $<"
	@$(CC) $(ASAN_CFLAGS) $(INC) -Wno-missing-prototypes -c $< -o $@

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "CC $<"
	@$(CC) $(RELEASE_CFLAGS) $(INC) -MMD -MP -c $< -o $@

$(BA)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "CC [asan] $<"
	@$(CC) $(ASAN_CFLAGS) $(INC) -MMD -MP -c $< -o $@

$(B)/libquiver.a: $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

# The real file and the two links: SONAME for the loader, libquiver.so for
# `-lquiver` at build time.
$(B)/libquiver.so.$(VERSION): $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--no-undefined -o $@ $^ $(LIBS)

$(B)/libquiver.so: $(B)/libquiver.so.$(VERSION)
	ln -sf libquiver.so.$(VERSION) $(B)/$(SONAME)
	ln -sf $(SONAME) $@

$(BA)/libquiver.a: $(LIB_OBJ_A)
	rm -f $@ && ar rcs $@ $^

$(B)/quiver: $(CLI_OBJ) $(B)/libquiver.a
	$(CC) -o $@ $^ $(LIBS) -ledit

$(BA)/quiver: $(CLI_OBJ_A) $(BA)/libquiver.a
	$(CC) $(ASAN_LDFLAGS) -o $@ $^ $(LIBS) -ledit

$(B)/quiverd: $(SERVER_OBJ) $(B)/libquiver.a
	$(CC) -o $@ $^ $(SERVER_LIBS)

$(BA)/quiverd: $(SERVER_OBJ_A) $(BA)/libquiver.a
	$(CC) $(ASAN_LDFLAGS) -o $@ $^ $(SERVER_LIBS)

# An example includes <quiver.h> as a program built against an installed
# Quiver does (tests/install.test.sh builds it so).
$(B)/examples/%.o $(BA)/examples/%.o: INC += -Idb

$(B)/embedded: $(B)/examples/embedded.o $(B)/libquiver.a
	$(CC) -o $@ $^ $(LIBS)

$(BA)/embedded: $(BA)/examples/embedded.o $(BA)/libquiver.a
	$(CC) $(ASAN_LDFLAGS) -o $@ $^ $(LIBS)

# Test programs link the ASan library; test_vecfile also needs cli/vecfile.
$(BA)/tests/test_vecfile: $(BA)/tests/test_vecfile.o $(BA)/tests/test_util.o $(BA)/cli/vecfile.o $(BA)/libquiver.a
	$(CC) $(ASAN_LDFLAGS) -o $@ $^ $(LIBS) $(TESTLIBS)

$(BA)/tests/test_cluster_log: $(BA)/tests/test_cluster_log.o $(BA)/tests/test_util.o $(CLUSTER_SRC:%.c=$(BA)/%.o) $(BA)/libquiver.a
	$(CC) $(ASAN_LDFLAGS) -o $@ $^ $(SERVER_LIBS) $(TESTLIBS)

$(BA)/tests/%: $(BA)/tests/%.o $(BA)/tests/test_util.o $(BA)/libquiver.a
	$(CC) $(ASAN_LDFLAGS) -o $@ $^ $(LIBS) $(TESTLIBS)

TEST_PROGS := $(TEST_BINS:%=$(BA)/tests/%)

# `make run` and `make test` install what is missing first, then build in
# a make of their own: as prerequisites beside the objects, -j would start
# compiling before the packages are there.
test: deps
	@$(MAKE) --no-print-directory check

# The release build too: tests/library.test.sh checks the shared library
# that ships.
check: all $(TEST_PROGS) $(BA)/embedded $(BA)/quiver $(BA)/quiverd fuzz $(TSAN_BINS)
	@./tests/run.sh $(BA)

# 200 kill -9 cycles of an embedded writer and 200 of quiverd (make test
# runs 10 of each).
CRASH_CYCLES ?= 200
crash-test: $(BA)/tests/test_crash $(BA)/quiverd
	QUIVER_BUILD=$(CURDIR)/$(BA) CRASH_CYCLES=$(CRASH_CYCLES) \
	    CMOCKA_MESSAGE_OUTPUT=TAP ./$(BA)/tests/test_crash

# The cluster's tests alone (make test runs them too, with the rest).
cluster-test: $(BA)/tests/test_cluster_log $(BA)/tests/test_cluster \
              $(BA)/quiverd
	QUIVER_BUILD=$(CURDIR)/$(BA) CMOCKA_MESSAGE_OUTPUT=TAP \
	    ./$(BA)/tests/test_cluster_log
	QUIVER_BUILD=$(CURDIR)/$(BA) CMOCKA_MESSAGE_OUTPUT=TAP \
	    ./$(BA)/tests/test_cluster

# 50 kill -9 cycles of a cluster node while writes go through another
# (make test runs 1), then one of the node the writes go through.
CLUSTER_KILL_CYCLES ?= 50
cluster-crash-test: $(BA)/tests/test_cluster $(BA)/quiverd
	QUIVER_BUILD=$(CURDIR)/$(BA) CLUSTER_KILL_CYCLES=$(CLUSTER_KILL_CYCLES) \
	    CMOCKA_MESSAGE_OUTPUT=TAP ./$(BA)/tests/test_cluster

# The issue's scenario of shards under faults (minutes: two grace periods,
# moves to a fifth node and away): test_shards_under_faults alone.
cluster-scenario-test: $(BA)/tests/test_cluster $(BA)/quiverd
	QUIVER_BUILD=$(CURDIR)/$(BA) QUIVER_TOP=$(CURDIR) CLUSTER_SCENARIO=1 \
	    QUIVER_TEST_ONLY=test_shards_under_faults \
	    CMOCKA_MESSAGE_OUTPUT=TAP ./$(BA)/tests/test_cluster

# ---- ThreadSanitizer: the library, quiverd, the shell and the tests that
# run threads or processes side by side, objects in build/tsan ----
TSAN_CFLAGS := $(CSTD) $(WARN) -O1 $(ARCH) -fPIC -g -fno-omit-frame-pointer \
               -fsanitize=thread -DQV_CHECKS
LIB_OBJ_T := $(LIB_SRC:%.c=$(BT)/%.o)
CLI_OBJ_T := $(CLI_SRC:%.c=$(BT)/%.o)
SERVER_OBJ_T := $(SERVER_SRC:%.c=$(BT)/%.o)

$(LIB_OBJ_T) $(CLI_OBJ_T) $(SERVER_OBJ_T): $(GEN)

$(BT)/build/gen/%.o: build/gen/%.c
	@mkdir -p $(dir $@)
	@echo "CC [tsan] $<"
	@$(CC) $(TSAN_CFLAGS) $(INC) -Wno-missing-prototypes -c $< -o $@

$(BT)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "CC [tsan] $<"
	@$(CC) $(TSAN_CFLAGS) $(INC) -MMD -MP -c $< -o $@

$(BT)/libquiver.a: $(LIB_OBJ_T)
	rm -f $@ && ar rcs $@ $^

$(BT)/quiverd: $(SERVER_OBJ_T) $(BT)/libquiver.a
	$(CC) -fsanitize=thread -o $@ $^ $(SERVER_LIBS)

$(BT)/quiver: $(CLI_OBJ_T) $(BT)/libquiver.a
	$(CC) -fsanitize=thread -o $@ $^ $(LIBS) -ledit

$(BT)/tests/%: $(BT)/tests/%.o $(BT)/tests/test_util.o $(BT)/libquiver.a
	$(CC) -fsanitize=thread -o $@ $^ $(LIBS) $(TESTLIBS)

# The concurrency tests under ThreadSanitizer (also part of `make test`).
tsan: $(TSAN_BINS)
	@./tests/run.sh $(BA) tsan

# ---- fuzzing: clang's libFuzzer with ASan+UBSan, objects in build/fuzz ----
# fuzz/run.sh runs one target (its smoke share and dictionary are there);
# docs/RELIABILITY.md says what each covers.
BF := build/fuzz
FUZZ_CC := clang
FUZZ_CFLAGS := $(CSTD) $(WARN) -O1 $(ARCH) -g -fno-omit-frame-pointer \
               -fsanitize=fuzzer-no-link,address,undefined \
               -fno-sanitize-recover=all -DQV_CHECKS
FUZZ_TARGETS := fuzz_request fuzz_payload fuzz_shell fuzz_import fuzz_filter \
                fuzz_records fuzz_remote
# the shell's pieces, for the shell and import targets
FUZZ_CLI_OBJ := $(filter-out $(BF)/cli/main.o,$(CLI_SRC:%.c=$(BF)/%.o))
FUZZ_BINS := $(FUZZ_TARGETS:%=$(BF)/%)
LIB_OBJ_F := $(LIB_SRC:%.c=$(BF)/%.o)
FUZZ_LINK := $(FUZZ_CC) -fsanitize=fuzzer,address,undefined
# empty: each target's own smoke share (fuzz/run.sh)
FUZZ_RUNS ?=
FUZZ_SECONDS ?= 600

$(BF)/%.o: %.c $(GEN)
	@mkdir -p $(dir $@)
	@echo "CC [fuzz] $<"
	@$(FUZZ_CC) $(FUZZ_CFLAGS) $(INC) -Wno-missing-prototypes -MMD -MP -c $< -o $@

$(BF)/libquiver.a: $(LIB_OBJ_F)
	rm -f $@ && ar rcs $@ $^

$(BF)/fuzz_request: $(BF)/fuzz/fuzz_request.o $(BF)/fuzz/fuzz_util.o $(BF)/wire/server/dispatch.o $(BF)/wire/server/router.o $(BF)/wire/server/table_router.o $(BF)/wire/server/placement.o $(CLUSTER_SRC:%.c=$(BF)/%.o) $(BF)/libquiver.a
	$(FUZZ_LINK) -o $@ $^ $(SERVER_LIBS)

$(BF)/fuzz_payload: $(BF)/fuzz/fuzz_payload.o $(BF)/fuzz/fuzz_util.o $(BF)/libquiver.a
	$(FUZZ_LINK) -o $@ $^ $(LIBS)

$(BF)/fuzz_shell: $(BF)/fuzz/fuzz_shell.o $(BF)/fuzz/fuzz_util.o $(FUZZ_CLI_OBJ) $(BF)/libquiver.a
	$(FUZZ_LINK) -o $@ $^ $(LIBS)

$(BF)/fuzz_import: $(BF)/fuzz/fuzz_import.o $(BF)/fuzz/fuzz_util.o $(FUZZ_CLI_OBJ) $(BF)/libquiver.a
	$(FUZZ_LINK) -o $@ $^ $(LIBS)

$(BF)/fuzz_filter: $(BF)/fuzz/fuzz_filter.o $(BF)/fuzz/fuzz_util.o $(BF)/libquiver.a
	$(FUZZ_LINK) -o $@ $^ $(LIBS)

$(BF)/fuzz_records: $(BF)/fuzz/fuzz_records.o $(BF)/fuzz/fuzz_util.o $(BF)/libquiver.a
	$(FUZZ_LINK) -o $@ $^ $(LIBS)

$(BF)/fuzz_remote: $(BF)/fuzz/fuzz_remote.o $(BF)/libquiver.a
	$(FUZZ_LINK) -o $@ $^ $(LIBS)

fuzz: $(FUZZ_BINS)

# Each target's smoke share (what `make test` runs), or each for
# FUZZ_SECONDS.
fuzz-smoke: $(FUZZ_BINS)
	@rc=0; for t in $(FUZZ_TARGETS); do \
	    FUZZ_RUNS=$(FUZZ_RUNS) ./fuzz/run.sh smoke $$t || rc=1; \
	done; exit $$rc

fuzz-long: $(FUZZ_BINS)
	@for t in $(FUZZ_TARGETS); do \
	    ./fuzz/run.sh long $$t $(FUZZ_SECONDS); \
	done

# Rewrite the seeds that programs write: the request corpus's frames, the
# remote corpus's answers (committed; run after changing
# wire/quiver.proto) and the records corpus's stored records (after
# changing a record's layout or fuzz_records' template database).
fuzz-seeds: $(B)/fuzz/seed_request.o $(B)/libquiver.a $(BF)/fuzz_remote \
            $(BF)/fuzz_records
	$(CC) -o $(B)/seed_request $(B)/fuzz/seed_request.o $(B)/libquiver.a \
	    $(LIBS)
	./$(B)/seed_request fuzz/corpus/request
	FUZZ_REMOTE_SEEDS=fuzz/corpus/remote ./$(BF)/fuzz_remote
	FUZZ_RECORDS_SEEDS=fuzz/corpus/records ./$(BF)/fuzz_records

# ---- install: PREFIX and DESTDIR as packagers expect; each directory may
# be set on its own (a distribution: PREFIX=/usr SYSCONFDIR=/etc
# LIBDIR=/usr/lib/x86_64-linux-gnu). quiverd goes to sbin: a daemon
# started by the system, not by users (docs/INSTALL.md). ----
PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
SBINDIR     ?= $(PREFIX)/sbin
LIBDIR      ?= $(PREFIX)/lib
INCLUDEDIR  ?= $(PREFIX)/include
MANDIR      ?= $(PREFIX)/share/man
SYSCONFDIR  ?= $(PREFIX)/etc
# systemd reads units and sysusers.d from /usr/local/lib too.
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
INSTALL     ?= install
# The templates in dist/ take the paths; quiver.pc's are relative to its
# prefix where they can be, so that pkg-config can relocate it.
in_prefix = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))
DIST_SUBST := -e 's|@PREFIX@|$(PREFIX)|g' \
              -e 's|@LIBDIR@|$(call in_prefix,$(LIBDIR))|g' \
              -e 's|@INCLUDEDIR@|$(call in_prefix,$(INCLUDEDIR))|g' \
              -e 's|@SBINDIR@|$(SBINDIR)|g' \
              -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
              -e 's|@VERSION@|$(VERSION)|g' -e 's|@LIBS@|$(LIBS)|g'
ENV_FILE := $(DESTDIR)$(SYSCONFDIR)/quiver/quiverd.env

# The example config is written only where there is none: an upgrade keeps
# the administrator's.
install: all
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) \
	    $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR) \
	    $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man3 \
	    $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(SYSCONFDIR)/quiver \
	    $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR)
	$(INSTALL) -m 755 $(B)/libquiver.so.$(VERSION) $(DESTDIR)$(LIBDIR)/
	ln -sf libquiver.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libquiver.so
	$(INSTALL) -m 644 $(B)/libquiver.a $(DESTDIR)$(LIBDIR)/
	$(INSTALL) -m 644 db/quiver.h $(DESTDIR)$(INCLUDEDIR)/
	sed $(DIST_SUBST) dist/quiver.pc.in >$(DESTDIR)$(LIBDIR)/pkgconfig/quiver.pc
	$(INSTALL) -m 755 $(B)/quiver $(DESTDIR)$(BINDIR)/
	$(INSTALL) -m 755 $(B)/quiverd $(DESTDIR)$(SBINDIR)/
	$(INSTALL) -m 644 man/quiver.1 $(DESTDIR)$(MANDIR)/man1/
	$(INSTALL) -m 644 man/libquiver.3 $(DESTDIR)$(MANDIR)/man3/
	$(INSTALL) -m 644 man/quiverd.8 $(DESTDIR)$(MANDIR)/man8/
	sed $(DIST_SUBST) dist/quiverd.service.in >$(DESTDIR)$(UNITDIR)/quiverd.service
	$(INSTALL) -m 644 dist/quiver.sysusers $(DESTDIR)$(SYSUSERSDIR)/quiver.conf
	if [ -e $(ENV_FILE) ]; then echo "keeping $(ENV_FILE)"; \
	else sed $(DIST_SUBST) dist/quiverd.env.in >$(ENV_FILE); fi

# Everything install wrote but the config, which may have been edited.
uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libquiver.so.$(VERSION) \
	    $(DESTDIR)$(LIBDIR)/$(SONAME) $(DESTDIR)$(LIBDIR)/libquiver.so \
	    $(DESTDIR)$(LIBDIR)/libquiver.a $(DESTDIR)$(INCLUDEDIR)/quiver.h \
	    $(DESTDIR)$(LIBDIR)/pkgconfig/quiver.pc $(DESTDIR)$(BINDIR)/quiver \
	    $(DESTDIR)$(SBINDIR)/quiverd $(DESTDIR)$(MANDIR)/man1/quiver.1 \
	    $(DESTDIR)$(MANDIR)/man3/libquiver.3 \
	    $(DESTDIR)$(MANDIR)/man8/quiverd.8 \
	    $(DESTDIR)$(UNITDIR)/quiverd.service \
	    $(DESTDIR)$(SYSUSERSDIR)/quiver.conf

run: deps
	@$(MAKE) --no-print-directory all
	@mkdir -p data
	./$(B)/quiver --db ./data

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
