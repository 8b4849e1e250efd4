/* TensorBoard event files (src/tensorboard.c, src/crc32c.c, leash tensorboard): checked against TensorBoard's
 * own reader and against python3-crc32c.
 *
 * The writer's scalars and a real run's metrics.jsonl converted by `leash tensorboard` are read back with
 * TensorBoard's EventAccumulator and, independently, record by record with python3-crc32c checking every
 * CRC (tests/ref/tensorboard_check.py); every scalar must be there, once, with its tag, step and value
 * rounded to float32, exactly. Skips with the reason when python3-crc32c or tensorboard is missing, and
 * fails under LEASH_REQUIRE_REF=1. It can fail (checked by hand): with the data CRC left unmasked the check
 * stopped at the first record, and with values one float32 step off 671 of the 675 scalars differed. */
#define _DEFAULT_SOURCE
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../src/crc32c.h"
#include "leash/error.h"
#include "leash/rl.h"
#include "leash/rng.h"
#include "leash/tensorboard.h"
#include "testutil.h"

static int have_crc32c(void) { return system("/usr/bin/python3 -c 'import crc32c' >/dev/null 2>&1") == 0; }
static int have_tensorboard(void) {
    return system("/usr/bin/python3 -c 'from tensorboard.backend.event_processing.event_accumulator import "
                  "EventAccumulator' >/dev/null 2>&1") == 0;
}

static void require_references(void) {
    if (!have_crc32c()) LEASH_SKIP_OR_FAIL("python3-crc32c is not installed (apt-get install python3-crc32c)");
    if (!have_tensorboard())
        LEASH_SKIP_OR_FAIL("TensorBoard is not installed (pip install --break-system-packages tensorboard)");
}

/* tests/ref/tensorboard_check.py on an event directory and the metrics it should hold; its output is logged. */
static void tensorboard_check(const char *event_dir, const char *metrics) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/ref/tensorboard_check.py' '%s' '%s' 2>&1", LEASH_SRCDIR,
             event_dir, metrics);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    char out[4096] = "";
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    int st = pclose(p);
    cr_log_info("%s", out);
    fprintf(stderr, "%s", out);
    cr_assert_eq(st, 0, "TensorBoard's reader disagrees with what was written:\n%s", out);
}

Test(tensorboard, crc32c_check_value_and_pieces) {
    // the standard check value of CRC-32C (iSCSI, RFC 3720) and one of its test vectors: 32 zero bytes
    cr_assert_eq(crc32c_update(0, "123456789", 9), 0xE3069283u, "crc32c(\"123456789\") = %#x", crc32c_update(0, "123456789", 9));
    unsigned char zeros[32] = {0};
    cr_assert_eq(crc32c_update(0, zeros, 32), 0x8A9136AAu);
    cr_assert_eq(crc32c_update(0, "", 0), 0u);
    // fed in pieces, the CRC of the whole
    cr_assert_eq(crc32c_update(crc32c_update(0, "1234", 4), "56789", 5), 0xE3069283u);
}

Test(tensorboard, crc32c_equals_python3_crc32c_on_random_data, .timeout = 60) {
    if (!have_crc32c()) LEASH_SKIP_OR_FAIL("python3-crc32c is not installed (apt-get install python3-crc32c)");
    char dir[] = "/tmp/leash-crc-XXXXXX", lens[128], data[128], cmd[512];
    cr_assert(mkdtemp(dir));
    snprintf(lens, sizeof lens, "%s/lengths.txt", dir);
    snprintf(data, sizeof data, "%s/data.bin", dir);
    FILE *fl = fopen(lens, "w"), *fd = fopen(data, "wb");
    leash_rng rng;
    leash_rng_seed(&rng, 7, 0);
    enum { N = 300 };
    uint32_t mine[N];
    unsigned char buf[5000];
    for (int i = 0; i < N; i++) {
        int n = i < 4 ? i : (int)(leash_rng_next(&rng) % sizeof buf); // 0..3 bytes, then up to 4999
        for (int k = 0; k < n; k++) buf[k] = (unsigned char)leash_rng_next(&rng);
        mine[i] = crc32c_update(0, buf, (size_t)n);
        fprintf(fl, "%d\n", n);
        fwrite(buf, 1, (size_t)n, fd);
    }
    fclose(fl), fclose(fd);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/ref/crc32c_ref.py' '%s' '%s'", LEASH_SRCDIR, lens, data);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    int differ = 0, read = 0;
    unsigned ref;
    while (read < N && fscanf(p, "%x", &ref) == 1) differ += ref != mine[read], read++;
    cr_assert_eq(pclose(p), 0, "%s failed", cmd);
    cr_log_info("crc32c: %d random buffers (0 to 4999 bytes), %d differ from python3-crc32c", read, differ);
    cr_assert_eq(read, N, "python3-crc32c answered %d of %d buffers", read, N);
    cr_assert_eq(differ, 0, "%d of %d CRCs differ from python3-crc32c", differ, N);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* Scalars of several tags over 150 steps, values over the whole float32 range and beyond (0, -0, a float32
 * subnormal, 1e30, a value that rounds to infinity), written by the library; the same numbers as metrics
 * JSON lines (%.17e, exact) for the checker. */
Test(tensorboard, writer_scalars_read_by_tensorboard, .timeout = 120) {
    require_references();
    char dir[] = "/tmp/leash-tb-XXXXXX", events[128], metrics[128], cmd[256];
    cr_assert(mkdtemp(dir));
    snprintf(events, sizeof events, "%s/events", dir);
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", dir);
    leash_tb *w;
    cr_assert_eq(leash_tb_open(&w, events), 0, "%s", leash_errmsg());
    cr_assert(strstr(leash_tb_path(w), "/events.out.tfevents."), "%s", leash_tb_path(w));
    const char *tags[] = {"objective/kl", "gold/reward", "loss/policy_avg", "caf\xc3\xa9 au lait/\xce\xb2", "x"};
    const double special[] = {0.0, -0.0, 1e-45, -3.4e38, 1e30, 1e39, 0.1, -2.5};
    FILE *f = fopen(metrics, "w");
    leash_rng rng;
    leash_rng_seed(&rng, 11, 0);
    int64_t step = 0;
    for (int i = 0; i < 150; i++) {
        step += 1 + (int64_t)(leash_rng_next(&rng) % 3) + (i == 100 ? 5000000000LL : 0); // gaps, a step past 2^32
        fprintf(f, "{\"step\": %lld", (long long)step);
        for (int t = 0; t < 5; t++) {
            if (t == 4 && i % 2) continue; // a tag on every other step only
            double v = i < 8 && t == 0 ? special[i] : leash_rng_normal(&rng) * pow(10.0, (double)(leash_rng_next(&rng) % 13) - 6.0);
            cr_assert_eq(leash_tb_scalar(w, tags[t], step, v, 1.7e9 + i), 0, "%s", leash_errmsg());
            fprintf(f, ", \"%s\": %.17e", tags[t], v); // exact, and -0 stays a float for Python
        }
        fputs("}\n", f);
        if (i == 75) cr_assert_eq(leash_tb_flush(w), 0);
    }
    fclose(f);
    cr_assert_eq(leash_tb_scalar(w, "", 1, 1.0, 0.0), LEASH_EINVAL);
    cr_assert_eq(leash_tb_close(w), 0, "%s", leash_errmsg());
    tensorboard_check(events, metrics);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

Test(tensorboard, open_fails_naming_the_directory) {
    char dir[] = "/tmp/leash-tb-XXXXXX", file[128];
    cr_assert(mkdtemp(dir));
    snprintf(file, sizeof file, "%s/not-a-dir", dir);
    FILE *f = fopen(file, "w");
    fclose(f);
    leash_tb *w = (leash_tb *)1;
    cr_assert_neq(leash_tb_open(&w, file), 0);
    cr_assert_null(w);
    cr_assert(strstr(leash_errmsg(), file), "%s", leash_errmsg());
    // two writers in the same second get two files
    leash_tb *a, *b;
    cr_assert_eq(leash_tb_open(&a, dir), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_tb_open(&b, dir), 0, "%s", leash_errmsg());
    cr_assert_str_neq(leash_tb_path(a), leash_tb_path(b));
    cr_assert_eq(leash_tb_close(a), 0);
    cr_assert_eq(leash_tb_close(b), 0);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* End to end: a real tiny GRPO run on the default world (gold metrics on), its metrics.jsonl converted by
 * `leash tensorboard`; every numeric metric must be TensorBoard's scalar. A second conversion into the same
 * directory is refused (TensorBoard would show every scalar twice). */
Test(tensorboard, converter_on_a_real_run, .timeout = 240) {
    require_references();
    rl_scratch w;
    char cmd[1024], events[160];
    rl_scratch_make(&w, "tbrun");
    leash_rl_config c = leash_rl_defaults(LEASH_GRPO);
    c.policy_dir = w.dir, c.prompts = w.prompts, c.out_dir = w.out, c.reward.kind = LEASH_REWARD_GOLD, c.steps = 3, c.batch = 2;
    c.grpo.group = 4, c.max_new = 6, c.sample_every = 1;
    cr_assert_eq(leash_rl_train(&c, NULL, NULL, NULL), 0, "%s", leash_errmsg());
    snprintf(events, sizeof events, "%s/tb", w.dir);
    snprintf(cmd, sizeof cmd, "%s tensorboard %s --out %s", LEASH_BIN, w.out, events);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    snprintf(cmd, sizeof cmd, "%s/metrics.jsonl", w.out);
    tensorboard_check(events, cmd);
    snprintf(cmd, sizeof cmd, "%s tensorboard %s --out %s 2>%s/err.txt", LEASH_BIN, w.out, events, w.dir);
    cr_assert_eq(system(cmd), 1 << 8, "a second conversion into %s was not refused", events);
    snprintf(cmd, sizeof cmd, "grep -q 'already holds the event file events.out.tfevents' %s/err.txt", w.dir);
    cr_assert_eq(system(cmd), 0, "the refusal does not name the event file");
    rl_scratch_drop(&w);
}

/* Review findings: a "step" of 1e300 was converted to long long (undefined behaviour; on x86 the scalar went
 * to step -2^63 and the conversion succeeded), and a metrics.jsonl without lines failed with exit 1 and no
 * message. Both must be errors naming the file. */
Test(tensorboard, converter_refuses_bad_steps_and_empty_files) {
    char dir[] = "/tmp/leash-tb-XXXXXX", path[128], cmd[512], err[160];
    cr_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    snprintf(err, sizeof err, "%s/err.txt", dir);
    const char *bad[][2] = {{"{\"step\": 1, \"loss\": 2}\n{\"step\": 1e300, \"loss\": 1}\n", "metrics.jsonl:2"},
                            {"{\"step\": 2.5, \"loss\": 1}\n", "metrics.jsonl:1"},
                            {"\n\n", "holds no metrics"}};
    for (int i = 0; i < 3; i++) {
        FILE *f = fopen(path, "w");
        cr_assert(f);
        fputs(bad[i][0], f);
        fclose(f);
        snprintf(cmd, sizeof cmd, "%s tensorboard %s --out %s/tb%d 2>%s", LEASH_BIN, dir, dir, i, err);
        cr_assert_eq(system(cmd), 1 << 8, "case %d: not refused", i);
        snprintf(cmd, sizeof cmd, "grep -q '%s' %s", bad[i][1], err);
        cr_assert_eq(system(cmd), 0, "case %d: the error does not say '%s'", i, bad[i][1]);
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* The committed C code of proto/tensorboard_event.proto is what protoc-c makes of it now. */
Test(tensorboard, generated_code_is_current) {
    if (system("protoc-c --version 2>/dev/null | grep -q '^protobuf-c 1.4.1$'") != 0)
        LEASH_SKIP_OR_FAIL("protoc-c 1.4.1 (protobuf-c-compiler, which generated src/tensorboard_event.pb-c.*) is not installed");
    char dir[] = "/tmp/leash-proto-XXXXXX", cmd[1024];
    cr_assert(mkdtemp(dir));
    snprintf(cmd, sizeof cmd, "cd '%s' && protoc-c --proto_path=proto --c_out='%s' proto/tensorboard_event.proto && "
                              "cmp '%s/tensorboard_event.pb-c.c' src/tensorboard_event.pb-c.c && "
                              "cmp '%s/tensorboard_event.pb-c.h' src/tensorboard_event.pb-c.h",
             LEASH_SRCDIR, dir, dir, dir);
    int st = system(cmd);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(st, 0, "src/tensorboard_event.pb-c.c or .h differs from protoc-c's output for "
                        "proto/tensorboard_event.proto: regenerate them (the command is in the .proto file)");
}
