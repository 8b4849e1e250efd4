# leash: RL fine-tuning of language models with a KL leash.
#
#   make            libleash.a, the leash binary, tests and benchmarks (in build/)
#   make test       unit tests (Criterion); make SANITIZE=1 test builds in build-san/ with ASan + UBSan
#   make MPI=1      the same with Open MPI (mpicc) in build-mpi/: mpirun -np N build-mpi/leash ppo ...
#   make MPI=1 test-mpi   2-rank runs against 1-rank runs (tests/mpi/)
#   make bench      benchmarks (side by side ratios; PyTorch column where python3-torch is installed)
#   make demo       the main job on the built-in example
#   make python     builds $(BUILD)/libleash.so and pip-installs the Python package in python/ (docs/python.md)
#   make clean
#
# Missing Debian packages are installed by scripts/deps.sh (or it prints the apt-get line to run).

CC      ?= gcc
BUILD   := build
OPT     := -O3
ifeq ($(SANITIZE),1)
  BUILD := build-san
  OPT   := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
endif
MPIFLAG :=
ifeq ($(MPI),1)
  CC      := mpicc
  BUILD   := $(BUILD)-mpi
  MPIFLAG := -DLEASH_MPI
endif
WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes
ifeq ($(WERROR),1)
  WARN  += -Werror
endif

# -fno-trapping-math lets loops with float compares vectorise; it changes no computed value (leash
# never reads floating-point exception flags). No -ffast-math: KL and PPO ratios live on exp/log edges.
# OpenBLAS: Debian's OpenMP build, so BLAS and leash's own loops share one thread pool (two pools
# fighting over the cores cost PyTorch up to 2.6x here, see PERF.md); the rpath makes the loader pick it
# over the pthread build that update-alternatives may prefer.
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
BLASDIR   := /usr/lib/$(MULTIARCH)/openblas-openmp
PKGCONF   := PKG_CONFIG_PATH=$(BLASDIR)/pkgconfig:$$PKG_CONFIG_PATH pkg-config

# oneDNN (libdnnl-dev, no pkg-config file in Debian): BF16 products for frozen models (src/matmul_bf16.c); its
# Debian build threads with libgomp, the same OpenMP pool as leash and OpenBLAS.
# recursive (=) on purpose: pkg-config runs when a recipe needs the flags, after `deps` has run
PKGS     = openblas libcjson libpcre2-8 libprotobuf-c
CFLAGS   = -std=c11 -g $(OPT) -fno-trapping-math $(WARN) $(MPIFLAG) -fopenmp -Iinclude $(shell $(PKGCONF) --cflags $(PKGS)) -MMD -MP
LDFLAGS  = $(OPT) -fopenmp -Wl,-rpath,$(BLASDIR)
LDLIBS   = $(shell $(PKGCONF) --libs $(PKGS)) -ldnnl -lm
TESTLIBS = $(shell pkg-config --libs criterion)

LIB_SRC   := $(wildcard src/*.c)
CLI_SRC   := $(wildcard src/cli/*.c)
TEST_SRC  := $(wildcard tests/*.c)
BENCH_SRC := $(wildcard bench/*.c)

LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ   := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_OBJ  := $(TEST_SRC:%.c=$(BUILD)/%.o)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

LIB   := $(BUILD)/libleash.a
BIN   := $(BUILD)/leash
TESTS := $(BUILD)/tests/leash-tests

.PHONY: all deps fuzz-deps test test-mpi test-python python valgrind fuzz bench demo demo-real kl-examples clean FORCE
all: $(LIB) $(BIN) $(TESTS) $(BENCH_BIN)

deps:
	@scripts/deps.sh $(if $(filter 1,$(MPI)),--mpi)

$(BUILD)/%.o: %.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# the tests find the CLI binary and the example files through these two paths
$(BUILD)/tests/%.o: tests/%.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DLEASH_BIN='"$(abspath $(BIN))"' -DLEASH_SRCDIR='"$(CURDIR)"' \
	  -DLEASH_ENOSPC_SO='"$(abspath $(BUILD))/tests/libenospc.so"' -c $< -o $@

# a removed source leaves no newer prerequisite behind: relink when the set of sources changes
SOURCES := $(BUILD)/sources.list
$(SOURCES): FORCE
	@mkdir -p $(dir $@)
	@echo '$(LIB_SRC) $(CLI_SRC) $(TEST_SRC) $(BENCH_SRC)' | cmp -s - $@ || echo '$(LIB_SRC) $(CLI_SRC) $(TEST_SRC) $(BENCH_SRC)' > $@
FORCE:

$(LIB): $(LIB_OBJ) $(SOURCES)
	@mkdir -p $(dir $@)
	rm -f $@
	$(AR) rcs $@ $(LIB_OBJ)

$(BIN): $(CLI_OBJ) $(LIB) $(SOURCES)
	$(CC) $(LDFLAGS) $(CLI_OBJ) $(LIB) $(LDLIBS) -o $@

$(TESTS): $(TEST_OBJ) $(LIB) $(SOURCES) $(BUILD)/tests/libenospc.so
	$(CC) $(LDFLAGS) $(TEST_OBJ) $(LIB) $(LDLIBS) $(TESTLIBS) -o $@

# a full disk on demand (LD_PRELOAD) for the disk-full tests
$(BUILD)/tests/libenospc.so: tests/shim/enospc.c
	@mkdir -p $(dir $@)
	gcc -std=c11 -O2 -fPIC -shared $< -o $@ -ldl

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(LIB)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# under SANITIZE=1, LeakSanitizer ignores Criterion's own leaks (tests/lsan.supp) but not ours; two test
# processes share the cores, so OpenMP threads wait passively instead of spinning against each other
test: $(TESTS) $(BIN)
	OMP_WAIT_POLICY=PASSIVE LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp $(TESTS) --jobs 2
	@$(MAKE) --no-print-directory test-python

bench: $(BENCH_BIN) $(BIN)
	@for b in $(BENCH_BIN); do echo "== $$b"; $$b || exit 1; done
	@echo "== bench/threads.sh (OpenMP wait policy: libgomp's spinning against leash's passive default, beside a busy loop)"
	@bench/threads.sh $(BUILD)
	@echo "== bench/trl_grpo.sh (GRPO against TRL 1.16's GRPOTrainer: same model, prompts, reward; interleaved rounds)"
	@bench/trl_grpo.sh $(BUILD)
	@echo "== bench/trl_grpo.sh smollm2 (the same at SmolLM2-135M-Instruct, the real GGUF; 2 rounds x 1 timed step)"
	@bench/trl_grpo.sh $(BUILD) 2 2 smollm2
	@if command -v mpicc >/dev/null && command -v mpirun >/dev/null; then \
	  echo "== bench/scaling.sh (2 MPI ranks x 1 thread against 1 rank x 2 threads)"; \
	  $(MAKE) --no-print-directory MPI=1 build-mpi/leash >/dev/null && bench/scaling.sh build-mpi; \
	else echo "== bench/scaling.sh skipped: Open MPI is not installed (scripts/deps.sh --mpi)"; fi

# the Python package (python/): the library's sources again with -fPIC, objects in $(BUILD)-pic/ so the static
# build is untouched, linked into $(BUILD)/libleash.so; python/setup.py runs this rule and ships the .so inside
# the package. test-python runs python/tests with pytest (skipped with the reason when python3, numpy or pytest
# is missing, a failure then under LEASH_REQUIRE_REF=1; skipped under SANITIZE=1), building the .so only to run
PYTHON  ?= /usr/bin/python3
PIC_OBJ := $(LIB_SRC:src/%.c=$(BUILD)-pic/src/%.o)
SHLIB   := $(BUILD)/libleash.so

$(BUILD)-pic/src/%.o: src/%.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fPIC -c $< -o $@

$(SHLIB): $(PIC_OBJ) $(SOURCES)
	$(CC) $(LDFLAGS) -shared -Wl,-soname,libleash.so $(PIC_OBJ) $(LDLIBS) -o $@

python: $(SHLIB)
	LEASH_BUILD=$(BUILD) $(PYTHON) -m pip install --break-system-packages --no-build-isolation ./python

ifeq ($(SANITIZE),1)
test-python:
	@echo "test-python: skipped under SANITIZE=1 (an ASan library loads into python only with libasan preloaded)"
else
test-python: $(BIN)
	@PYTHON=$(PYTHON) MAKE="$(MAKE)" python/run-tests.sh $(SHLIB) $(BIN)
endif

# the whole story on the default world (scripts/demo.sh; stages are cached in build/demo)
demo: $(BIN)
	scripts/demo.sh

# the same story on a real model, SmolLM2-135M-Instruct with LoRA (scripts/demo-real.sh; runs cached in
# $(BUILD)/demo-real); scripts/deps.sh --real fetches the model once
demo-real: $(BIN)
	@scripts/deps.sh --real
	LEASH_BIN=$(BIN) scripts/demo-real.sh

# the KL math from a shell, on the files in examples/
kl-examples: $(BIN)
	$(BIN) kl examples/kl_rows.json
	$(BIN) kl --sampled examples/kl_tokens.txt
	$(BIN) kl --optimum examples/kl_optimum.json

# fuzzing: clang's libFuzzer under ASan + UBSan, each harness in fuzz/ for FUZZ_SECONDS from its seed corpus
# in fuzz/corpus/ (new inputs go to build-fuzz/corpus/, a crash to build-fuzz/crash-*; a crash found
# becomes a seed file, and the fix a regression test). Needs clang: scripts/deps.sh --fuzz.
FUZZ_SECONDS ?= 30
FUZZ_SRC   := $(wildcard fuzz/fuzz_*.c)
FUZZ_BIN   := $(FUZZ_SRC:fuzz/%.c=build-fuzz/%)
FUZZ_OBJ   := $(LIB_SRC:src/%.c=build-fuzz/src/%.o)
FUZZ_FLAGS  = -std=c11 -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
              -Wno-unknown-pragmas -Iinclude $(shell $(PKGCONF) --cflags $(PKGS))

fuzz-deps: deps
	@scripts/deps.sh --fuzz

build-fuzz/src/%.o: src/%.c | fuzz-deps
	@mkdir -p $(dir $@)
	clang $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

build-fuzz/libleash.a: $(FUZZ_OBJ)
	rm -f $@
	$(AR) rcs $@ $^

build-fuzz/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz_common.h build-fuzz/libleash.a
	clang $(FUZZ_FLAGS) -fsanitize=fuzzer $< build-fuzz/libleash.a -Wl,-rpath,$(BLASDIR) $(LDLIBS) -o $@

fuzz: $(FUZZ_BIN)
	@for b in $(FUZZ_BIN); do n=$$(basename $$b); mkdir -p build-fuzz/corpus/$$n; \
	  echo "== $$n: $(FUZZ_SECONDS) s"; \
	  $$b build-fuzz/corpus/$$n fuzz/corpus/$$n -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -max_len=65536 \
	    -artifact_prefix=build-fuzz/crash-$$n- -print_final_stats=1 2>&1 | grep -E '^(stat::number_of_executed_units|stat::new_units_added|==[0-9]+==|SUMMARY|fuzz:|#[0-9]+.*DONE)' || true; \
	  if ls build-fuzz/crash-$$n-* >/dev/null 2>&1; then echo "fuzz: $$n found a crash: build-fuzz/crash-$$n-*" >&2; exit 1; fi; \
	done

# a short PPO run under valgrind memcheck (tests/valgrind.sh; needs valgrind: scripts/deps.sh --valgrind)
valgrind: $(BIN)
	@scripts/deps.sh --valgrind
	tests/valgrind.sh $(BIN)

# MPI: a 2-rank PPO, GRPO and pretraining run against 1-rank runs of the same global batch, and a rank
# that fails or hangs stopping the job (tests/mpi/check.sh; needs make MPI=1)
test-mpi: $(BIN) $(BUILD)/tests/mpi-collectives
	@test "$(MPI)" = 1 || { echo "make test-mpi needs MPI=1" >&2; exit 2; }
	tests/mpi/check.sh $(BUILD)

$(BUILD)/tests/mpi-collectives: tests/mpi/collectives.c $(LIB) | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) $< $(LIB) $(LDLIBS) -o $@

clean:
	rm -rf build build-san build-mpi build-san-mpi build-fuzz build-pic

-include $(PIC_OBJ:.o=.d) $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(BENCH_BIN:=.d)
