/* `leash lora merge ADAPTER_DIR OUT_DIR`: folds a PEFT LoRA adapter into its base, W + (alpha / r) B A,
 * and writes a full model directory (with the base's tokenizer) that any tool loads without PEFT. The
 * directory is written whole: into a temporary beside OUT_DIR, renamed into place at the end. */
#define _GNU_SOURCE /* realpath */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "leash/error.h"
#include "leash/fileio.h"
#include "leash/gpt.h"
#include "leash/rundir.h"
#include "leash/tokenizer.h"

static const char *usage =
    "usage: leash lora merge ADAPTER_DIR OUT_DIR [--overwrite]\n"
    "\n"
    "ADAPTER_DIR is a PEFT LoRA directory (adapter_config.json + adapter_model.safetensors), such as the\n"
    "DIR/policy that leash ppo/grpo --lora-r N writes; its base model is the directory its\n"
    "base_model_name_or_path names. OUT_DIR receives the merged model (config.json, model.safetensors) and\n"
    "the tokenizer files of ADAPTER_DIR (or, if it has none, of the base). OUT_DIR is written whole (a\n"
    "temporary directory beside it, renamed at the end); it may not be ADAPTER_DIR or the base model, and an\n"
    "existing model directory there needs --overwrite.\n";

/* The real path of p; for a path that does not exist yet, its parent's real path and its last name. */
static int real_path(const char *p, char *out) {
    if (realpath(p, out)) return 0;
    char dir[PATH_MAX], parent_real[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", p);
    for (size_t n = strlen(dir); n > 1 && dir[n - 1] == '/';) dir[--n] = '\0';
    char *slash = strrchr(dir, '/');
    const char *parent = ".", *name = dir;
    if (slash) *slash = '\0', parent = slash == dir ? "/" : dir, name = slash + 1;
    if (!realpath(parent, parent_real)) return -1;
    return snprintf(out, PATH_MAX, "%s/%s", strcmp(parent_real, "/") ? parent_real : "", name) >= PATH_MAX ? -1 : 0;
}

/* Refuses an OUT_DIR that is the adapter or its base, or an existing non-empty directory without overwrite. */
static int check_out(const char *in, const char *base, const char *out, int overwrite) {
    char rin[PATH_MAX], rbase[PATH_MAX], rout[PATH_MAX];
    if (real_path(out, rout)) return leash_fail(LEASH_EINVAL, "OUT_DIR %s: %s", out, strerror(errno));
    if (real_path(in, rin) == 0 && !strcmp(rin, rout))
        return leash_fail(LEASH_EINVAL, "OUT_DIR %s is the adapter directory itself: merging there would replace the "
                                        "adapter; choose a new directory",
                          out);
    if (base && real_path(base, rbase) == 0 && !strcmp(rbase, rout))
        return leash_fail(LEASH_EINVAL, "OUT_DIR %s is the adapter's base model (%s): merging there would overwrite the "
                                        "base the adapter applies to; choose a new directory",
                          out, base);
    struct stat st;
    if (stat(out, &st) != 0) return LEASH_OK;
    if (!S_ISDIR(st.st_mode)) return leash_fail(LEASH_EINVAL, "OUT_DIR %s exists and is not a directory", out);
    if (rmdir(out) == 0) return LEASH_OK; // an empty directory: nothing to lose
    char cfg[PATH_MAX + 16];
    snprintf(cfg, sizeof cfg, "%s/config.json", out);
    if (!overwrite)
        return leash_fail(LEASH_EINVAL, "OUT_DIR %s exists and is not empty: --overwrite replaces a model directory there, "
                                        "or choose a new directory",
                          out);
    if (access(cfg, F_OK) != 0)
        return leash_fail(LEASH_EINVAL, "OUT_DIR %s holds files but no config.json: not a model directory; --overwrite "
                                        "replaces only a model directory",
                          out);
    return LEASH_OK;
}

/* Writes the merged model and its tokenizer into tmp, then puts tmp in out's place (an old out is moved
 * aside first and removed after). */
static int write_merged(const leash_gpt *merged, const leash_gpt *m, const char *in, const char *out) {
    char tmp[PATH_MAX + 32], old[PATH_MAX + 32], dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", out);
    for (size_t n = strlen(dir); n > 1 && dir[n - 1] == '/';) dir[--n] = '\0';
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dir, (long)getpid());
    snprintf(old, sizeof old, "%s.old.%ld", dir, (long)getpid());
    leash_remove_tree(tmp);
    int rc = leash_mkdir(tmp);
    if (!rc) rc = leash_gpt_save(merged, tmp);
    if (!rc && leash_tokenizer_copy(in, tmp)) rc = leash_tokenizer_copy(leash_gpt_source_dir(m), tmp);
    int moved = 0;
    if (!rc && access(dir, F_OK) == 0) {
        if (rename(dir, old) != 0) rc = leash_fail(LEASH_EIO, "cannot move the old %s aside: %s", dir, strerror(errno));
        else moved = 1;
    }
    if (!rc && rename(tmp, dir) != 0) {
        rc = leash_fail(LEASH_EIO, "cannot rename %s to %s: %s", tmp, dir, strerror(errno));
        if (moved) rename(old, dir); // the old one back
        moved = 0;
    }
    if (rc) leash_remove_tree(tmp);
    if (moved) leash_remove_tree(old);
    return rc;
}

int cli_lora(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return fputs(usage, stdout), 0;
    int overwrite = argc == 5 && !strcmp(argv[4], "--overwrite");
    if (argc < 2 || strcmp(argv[1], "merge"))
        return fprintf(stderr, "leash lora: the subcommand is merge, got '%s'\n%s", argc < 2 ? "" : argv[1], usage), 2;
    for (int i = 2; i < argc; i++)
        if (argv[i][0] == '-' && strcmp(argv[i], "--overwrite"))
            return fprintf(stderr, "leash lora merge: unknown option '%s'\n%s", argv[i], usage), 2;
    if (argc != 4 + overwrite) return fprintf(stderr, "leash lora merge: need ADAPTER_DIR and OUT_DIR\n%s", usage), 2;
    const char *in = argv[2], *out = argv[3];
    leash_gpt *m = NULL, *merged = NULL;
    int rc = leash_gpt_load(&m, in);
    if (!rc && (rc = leash_gpt_merge_lora(&merged, m))) rc = leash_fail_wrap(rc, "%s", in);
    int usage_error = 0;
    if (!rc && (rc = check_out(in, leash_gpt_source_dir(m), out, overwrite))) usage_error = 1;
    if (!rc) rc = write_merged(merged, m, in, out);
    if (rc) fprintf(stderr, "leash lora: %s\n", leash_errmsg());
    else
        printf("merged %s (rank %d, alpha %g) into %s\n", in, leash_gpt_lora(m)->rank, (double)leash_gpt_lora(m)->alpha, out);
    leash_gpt_free(merged);
    leash_gpt_free(m);
    return rc ? (usage_error ? 2 : 1) : 0;
}
