/* `leash diff A B`: how far apart two model directories are, tensor by tensor. For checking that two runs
 * agree (one process against several MPI ranks, a resumed run against an uninterrupted one) and that a
 * reference stayed untouched. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "leash/error.h"
#include "leash/gpt.h"

static const char *usage =
    "usage: leash diff MODEL_A MODEL_B [--tol X] [-q]\n"
    "\n"
    "Compares two model directories of the same shape, tensor by tensor: the largest absolute difference and\n"
    "the largest relative to the tensor's scale, max |a - b| / max |a| (normwise: a weight near 0 that moved by\n"
    "1e-9 is not a 100% difference). Prints 'identical' when\n"
    "every weight is bit-identical. With --tol X the exit status is 1 when the largest relative difference\n"
    "exceeds X (default: any difference is reported but the status is 0). -q prints only the summary line.\n";

int cli_diff(int argc, char **argv) {
    const char *a_dir = NULL, *b_dir = NULL;
    float tol = -1.0f;
    int quiet = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return fputs(usage, stdout), 0;
        if (!strcmp(argv[i], "-q")) quiet = 1;
        else if (argv[i][0] == '-' && argv[i][1] && strcmp(argv[i], "--tol"))
            return fprintf(stderr, "leash diff: unknown option '%s'\n%s", argv[i], usage), 2;
        else if (!strcmp(argv[i], "--tol") && i + 1 < argc) {
            if (cli_float("diff", "--tol", argv[++i], 0, 1e30, &tol)) return 2;
        } else if (!a_dir) a_dir = argv[i];
        else if (!b_dir) b_dir = argv[i];
        else return fprintf(stderr, "leash diff: unexpected argument '%s'\n%s", argv[i], usage), 2;
    }
    if (!a_dir || !b_dir) return fprintf(stderr, "leash diff: need MODEL_A and MODEL_B\n%s", usage), 2;
    leash_gpt *a = NULL, *b = NULL;
    if (leash_gpt_load(&a, a_dir) || leash_gpt_load(&b, b_dir)) {
        fprintf(stderr, "leash diff: %s\n", leash_errmsg());
        leash_gpt_free(a);
        return 1;
    }
    int status = 0;
    if (leash_gpt_num_tensors(a) != leash_gpt_num_tensors(b) || leash_gpt_num_params(a) != leash_gpt_num_params(b)) {
        fprintf(stderr, "leash diff: %s has %d tensors (%zu weights), %s has %d (%zu): not the same architecture\n", a_dir,
                leash_gpt_num_tensors(a), leash_gpt_num_params(a), b_dir, leash_gpt_num_tensors(b), leash_gpt_num_params(b));
        status = 1;
        goto done;
    }
    double worst_abs = 0, worst_rel = 0;
    size_t differing = 0;
    const char *worst_name = "";
    for (int t = 0; t < leash_gpt_num_tensors(a); t++) {
        const leash_tensor_info *ta = leash_gpt_tensor(a, t), *tb = leash_gpt_tensor(b, t);
        if (strcmp(ta->name, tb->name) || ta->numel != tb->numel) {
            fprintf(stderr, "leash diff: tensor %d is %s in %s but %s in %s\n", t, ta->name, a_dir, tb->name, b_dir);
            status = 1;
            goto done;
        }
        const float *x = leash_gpt_params(a) + ta->offset, *y = leash_gpt_params(b) + tb->offset;
        double scale = 0, dabs = 0, drel = 0;
        size_t nd = 0;
        for (size_t i = 0; i < ta->numel; i++) scale = fmax(scale, fabs(x[i]));
        for (size_t i = 0; i < ta->numel; i++) {
            if (memcmp(&x[i], &y[i], sizeof(float)) == 0) continue;
            dabs = fmax(dabs, fabs((double)x[i] - y[i]));
            nd++;
        }
        drel = nd ? (scale > 0 ? dabs / scale : INFINITY) : 0.0;
        if (!quiet && nd) printf("%-32s %10zu of %10zu differ  max abs %.3g  max rel %.3g\n", ta->name, nd, ta->numel, dabs, drel);
        differing += nd;
        if (drel > worst_rel) worst_rel = drel, worst_name = ta->name;
        worst_abs = fmax(worst_abs, dabs);
    }
    if (!differing) printf("identical: all %zu weights are bit-identical\n", leash_gpt_num_params(a));
    else printf("%zu of %zu weights differ: max abs %.3g, max rel %.3g (%s)\n", differing, leash_gpt_num_params(a), worst_abs,
                worst_rel, worst_name);
    if (tol >= 0 && worst_rel > tol) {
        fprintf(stderr, "leash diff: max relative difference %.3g exceeds --tol %g\n", worst_rel, (double)tol);
        status = 1;
    }
done:
    leash_gpt_free(a), leash_gpt_free(b);
    return status;
}
