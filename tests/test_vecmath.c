/* leash's vectorisable exp and tanh (src/vecmath.h) against libm in float64, over their whole range. */
#include <criterion/criterion.h>
#include <math.h>

#include "../src/vecmath.h"

Test(vecmath, exp_nonpos_double) {
    double worst = 0.0;
    for (double x = -708.0; x <= 0.0; x += 0.0137) worst = fmax(worst, fabs(exp_nonpos(x) - exp(x)) / exp(x));
    cr_assert(worst < 4e-16, "float64 exp: worst relative error %g", worst);
    cr_assert_eq(exp_nonpos(-710.0), 0.0);
    cr_assert_eq(exp_nonpos(0.0), 1.0);
}

Test(vecmath, expf_nonpos_float) {
    double worst = 0.0;
    for (float x = -87.0f; x <= 0.0f; x += 0.00731f) worst = fmax(worst, fabs(expf_nonpos(x) - exp((double)x)) / exp((double)x));
    cr_assert(worst < 5e-7, "float32 exp: worst relative error %g", worst);
    cr_assert_eq(expf_nonpos(-90.0f), 0.0f);
}

Test(vecmath, tanhf_vec) {
    double worst = 0.0;
    for (float x = -12.0f; x <= 12.0f; x += 0.000977f) worst = fmax(worst, fabs(tanhf_vec(x) - tanh((double)x)));
    cr_assert(worst < 2e-7, "tanh: worst absolute error %g", worst);
    cr_assert_eq(tanhf_vec(0.0f), 0.0f);
    cr_assert_eq(tanhf_vec(40.0f), 1.0f);
    cr_assert_eq(tanhf_vec(-40.0f), -1.0f);
}
