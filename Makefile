# sqlm - plain Makefile, no configure step.
#   make             sqlm CLI, libsqlm.a, libsqlm.so, examples/generate,
#                    sqlm.so (the SQLite extension) against the system SQLite
#                    and sqlm.duckdb_extension (the DuckDB extension)
#   make test        unit + golden + end-to-end tests (SQLite), and the
#                    corrupt-file tests under ASan/UBSan
#   make bench       speed tables (see bench/; BENCH_FULL=1 for every shape),
#                    the SQL functions against the CLI (bench/ext.sh)
#   make bench-mem   sqlm and llama.cpp under cgroup memory limits (bench/mem.sh)
CC      ?= cc
OPT     ?= -O3 -march=native
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -pthread -MMD -MP -fPIC
LDLIBS  += -lsqlite3 -ljansson -lm -ldl -pthread
# the command line alone (sqlm serve) links the HTTP server library
CLI_LIBS = -lmicrohttpd

B        = build
SRC      = $(sort $(wildcard src/*/*.c src/*/*/*.c))
OBJ      = $(SRC:%.c=$(B)/%.o)
CLI_SRC  = $(sort $(wildcard tools/cli/*.c))
CLI_OBJ  = $(CLI_SRC:%.c=$(B)/%.o)
TEST_SRC = $(sort $(wildcard tests/unit/test-*.c))
TESTS    = $(TEST_SRC:tests/unit/%.c=$(B)/%)
REF_SRC  = $(sort $(wildcard tests/ref/*.c))
REF_OBJ  = $(REF_SRC:%.c=$(B)/%.o)

all: sqlm sqlm.so sqlm.duckdb_extension $(B)/libsqlm.so examples/generate

sqlm: $(B)/sqlm
	cp $< $@

$(B)/sqlm: $(B)/libsqlm.a $(CLI_OBJ)
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(B)/libsqlm.a $(CLI_LIBS) $(LDLIBS)

$(B)/libsqlm.a: $(OBJ)
	@rm -f $@
	ar rcs $@ $^

# The shared library exports the public API of include/sqlm.h and the
# library's other sqlm_ symbols (every global of libsqlm starts with sqlm_).
$(B)/libsqlm.so: $(OBJ)
	$(CC) $(CFLAGS) -shared -Wl,-soname,libsqlm.so -o $@ $^ $(LDLIBS)

# The command line, the examples, test-api and test-ext see the public
# header alone.
$(CLI_OBJ) $(B)/test-api $(B)/test-ext: CFLAGS += -Iinclude

# sqlm.so: the loadable SQLite extension (`.load ./sqlm`), libsqlm's objects
# inside it and only its entry point exported (tools/sqlite-ext/sqlm.map).
# tools/ext/common.c: what it shares with the DuckDB extension.
EXT_COMMON = $(B)/tools/ext/common.o
EXT_OBJ = $(B)/tools/sqlite-ext/sqlite_ext.o $(EXT_COMMON)
$(EXT_OBJ): CFLAGS += -Iinclude
sqlm.so: $(B)/sqlm.so
	cp $< $@

$(B)/sqlm.so: $(EXT_OBJ) $(B)/libsqlm.a tools/sqlite-ext/sqlm.map
	$(CC) $(CFLAGS) -shared -Wl,--version-script=tools/sqlite-ext/sqlm.map -Wl,-z,defs -o $@ $(EXT_OBJ) $(B)/libsqlm.a $(LDLIBS)

# sqlm.duckdb_extension: the loadable DuckDB extension (LOAD, with unsigned
# extensions allowed), the shared library with DuckDB's metadata footer
# appended (tools/duckdb-ext/metadata.sh).  No DuckDB header or library is
# needed to build it: it binds the C API from the library that loads it.
DUCK_EXT_OBJ = $(B)/tools/duckdb-ext/duckdb_ext.o $(EXT_COMMON)
$(DUCK_EXT_OBJ): CFLAGS += -Iinclude
SQLM_VERSION = $(shell sed -n 's/^\#define SQLM_VERSION "\(.*\)"/\1/p' include/sqlm.h)
sqlm.duckdb_extension: $(B)/sqlm.duckdb_extension
	cp $< $@

$(B)/sqlm_duckdb.so: $(DUCK_EXT_OBJ) $(B)/libsqlm.a tools/duckdb-ext/sqlm.map
	$(CC) $(CFLAGS) -shared -Wl,--version-script=tools/duckdb-ext/sqlm.map -Wl,-z,defs -o $@ $(DUCK_EXT_OBJ) $(B)/libsqlm.a $(LDLIBS)

$(B)/sqlm.duckdb_extension: $(B)/sqlm_duckdb.so tools/duckdb-ext/metadata.sh include/sqlm.h
	{ cat $<; ./tools/duckdb-ext/metadata.sh v$(SQLM_VERSION); } >$@.tmp && mv $@.tmp $@

# examples/: programs on the public API only (<sqlm.h>), linked statically
# so that they run from the tree.
EXAMPLES = $(patsubst %.c,%,$(sort $(wildcard examples/*.c)))
examples/%: examples/%.c $(B)/libsqlm.a include/sqlm.h
	$(CC) $(filter-out -MMD -MP,$(CFLAGS)) -Iinclude -o $@ $< $(B)/libsqlm.a $(LDLIBS)

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(B)/test-%: tests/unit/test-%.c $(B)/libsqlm.a $(REF_OBJ) tests/test.h
	$(CC) $(CFLAGS) -o $@ $< $(REF_OBJ) $(B)/libsqlm.a $(LDLIBS)

# test-duckdb and test-duckdb-native run test-sql's checks on DuckDB (they
# include the file).
$(B)/test-duckdb $(B)/test-duckdb-native: tests/unit/test-sql.c
# test-duckdb's check 9 includes the benchmark's products-only bound.
$(B)/test-duckdb: bench/bound.c

# The readers, the tokenizer and the in-place tile reads again, under
# AddressSanitizer and UBSan.
ASAN_FLAGS = -O1 -g -march=native -fsanitize=address,undefined,float-cast-overflow -fno-omit-frame-pointer -fno-sanitize-recover=all
asan:
	$(MAKE) B=build-asan OPT="$(ASAN_FLAGS)" build-asan/test-corrupt build-asan/test-template build-asan/test-tiles build-asan/sqlm build-asan/sqlm.so \
	    build-asan/sqlm.duckdb_extension build-asan/test-modelfuzz

# The README's two commands: `make demo` and `make test`.  Both install the
# Debian packages they need first (scripts/install-deps.sh), then the pinned
# DuckDB library into .deps/ (scripts/install-duckdb.sh, from npm); without
# it sqlm still builds and runs, and the DuckDB tests print "skipped".  The
# official openai npm client goes into .deps/openai (scripts/install-openai.sh)
# for the server's client test, which prints "skipped" without it.
deps:
	@./scripts/install-deps.sh
	@./scripts/install-duckdb.sh >/dev/null || echo "deps: DuckDB library not installed: DuckDB tests will be skipped" >&2
	@./scripts/install-openai.sh || echo "deps: the openai npm client not installed: its server test will be skipped" >&2

demo: deps
	$(MAKE) sqlm
	./sqlm import ../shared/models/stories260K/stories260K.bin -o stories260K.db
	./sqlm run -m stories260K.db -p "Once upon a time" -n 64 --temp 0

test: deps llama-deps
	$(MAKE) check

# llama.cpp's native build (.deps/llama.cpp) for tests/llama.sh and the
# benchmarks: built from the tarball beside the repository when missing (a
# few minutes; scripts/build-llamacpp.sh).
llama-deps:
	@./scripts/build-llamacpp.sh >/dev/null || echo "llama-deps: llama.cpp not built: tests/llama.sh will be skipped" >&2

check: all $(TESTS) $(B)/refbench asan
	@set -e; for t in $(TESTS); do echo "== $$t"; ./$$t; done
	@echo "== build-asan/test-corrupt"; ./build-asan/test-corrupt
	@echo "== build-asan/test-template"; ./build-asan/test-template
	@echo "== build-asan/test-tiles"; ./build-asan/test-tiles
	@echo "== build-asan/test-modelfuzz"; ./build-asan/test-modelfuzz
	@./tests/e2e.sh ./sqlm
	@./tests/golden-sql.sh ./sqlm
	@echo "== tests/llama.sh"; ./tests/llama.sh ./sqlm
	@echo "== tests/e2e.sh under ASan/UBSan"; ./tests/e2e.sh ./build-asan/sqlm
	@echo "== tests/sqlite-ext.sh"; ./tests/sqlite-ext.sh ./sqlm.so
	@echo "== tests/sqlite-ext.sh under ASan/UBSan"; ./tests/sqlite-ext.sh ./build-asan/sqlm.so --asan
	@echo "== tests/duckdb-ext.sh"; ./tests/duckdb-ext.sh ./sqlm.duckdb_extension
	@echo "== tests/duckdb-ext.sh under ASan/UBSan"; ./tests/duckdb-ext.sh ./build-asan/sqlm.duckdb_extension --asan
	@echo "== build/test-ext on build-asan/sqlm.so"; LD_PRELOAD=$$(gcc -print-file-name=libasan.so) ./$(B)/test-ext build-asan/sqlm.so
	@echo "== tests/membudget.sh"; ./tests/membudget.sh ./sqlm
	@echo "== tests/crash.sh"; ./tests/crash.sh ./sqlm
	@echo "== tests/serve.sh"; ./tests/serve.sh ./sqlm
	@echo "== tests/serve.sh under ASan/UBSan"; ./tests/serve.sh ./build-asan/sqlm --no-budget
	@echo "== tests/serve-openai.sh"; ./tests/serve-openai.sh ./sqlm
	@echo "== tests/serve-openai.sh under ASan/UBSan"; ./tests/serve-openai.sh ./build-asan/sqlm

$(B)/tokbench: bench/tokbench.c $(B)/libsqlm.a
	$(CC) $(CFLAGS) -o $@ $< $(B)/libsqlm.a $(LDLIBS)

# The C reference speed baseline (bench/speed.sh): tests/ref in its stored mode.
$(B)/refbench: bench/refbench.c $(B)/libsqlm.a $(REF_OBJ)
	$(CC) $(CFLAGS) -o $@ $< $(REF_OBJ) $(B)/libsqlm.a $(LDLIBS)

# The peer of the speed and memory benchmarks, against llama.cpp's library.
LLAMA_DIR = .deps/llama.cpp
$(LLAMA_DIR)/bin/libllama.so:
	./scripts/build-llamacpp.sh >/dev/null
$(B)/llamabench: bench/llamabench.c $(LLAMA_DIR)/bin/libllama.so
	$(CC) $(filter-out -MMD -MP,$(CFLAGS)) -I$(LLAMA_DIR)/include -o $@ $< -L$(LLAMA_DIR)/bin -lllama \
	    -Wl,-rpath,$(abspath $(LLAMA_DIR)/bin)

# DuckDB matvec ceiling and pass ablation helper (scripts/bench-duckdb-passes.sh).
$(B)/duckbench: bench/duckbench.c bench/bound.c $(B)/libsqlm.a
	$(CC) $(CFLAGS) -o $@ bench/duckbench.c bench/bound.c $(B)/libsqlm.a $(LDLIBS)

# Rewrite tests/golden-sql/*.sql from the current code (review with git diff).
golden-sql: sqlm
	./tests/golden-sql.sh ./sqlm --update

# libFuzzer over the template renderer, the tokenizers and the model files
# (tests/fuzz/run.sh), FUZZ_SECONDS each; not part of `make test`.
FUZZ_SECONDS ?= 120
fuzz:
	./tests/fuzz/run.sh all $(FUZZ_SECONDS)

bench: deps
	$(MAKE) sqlm sqlm.so $(B)/tokbench $(B)/refbench $(B)/duckbench $(B)/llamabench
	./bench/run.sh
	./scripts/bench-duckdb.sh
	./bench/speed.sh
	./bench/ext.sh

# Models larger than their memory limit: sqlm --mem-budget against
# llama.cpp's mmap under the same cgroup limits (root, cgroup v1).
bench-mem: deps
	$(MAKE) sqlm $(B)/readbw $(B)/llamabench
	./bench/mem.sh

$(B)/readbw: bench/readbw.c
	@mkdir -p $(B)
	$(CC) $(CFLAGS) -o $@ $< -pthread

clean:
	rm -rf build build-asan sqlm sqlm.so sqlm.duckdb_extension $(EXAMPLES)

# Each object depends on the headers it includes (gcc -MMD).
-include $(shell find $(B) build-asan -name '*.d' 2>/dev/null)

.PHONY: all deps demo test llama-deps check asan golden-sql fuzz bench bench-mem clean
.SECONDARY:
