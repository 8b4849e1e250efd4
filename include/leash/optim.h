/* AdamW with bias correction and decoupled weight decay, global grad-norm clipping, and a linear-warmup
 * + cosine learning-rate schedule. Gradient accumulation is the caller's: sum micro-batch gradients
 * (scaling each loss by 1 / micro-batches) and step once. */
#ifndef LEASH_OPTIM_H
#define LEASH_OPTIM_H

#include <stddef.h>

#include "leash/gpt.h"

typedef struct {
    float lr;           /* peak learning rate */
    float min_lr_ratio; /* the cosine ends at lr * min_lr_ratio */
    int warmup_steps;   /* linear warmup from lr / warmup_steps to lr */
    int total_steps;    /* cosine decay over [warmup_steps, total_steps); 0: constant after warmup */
    float beta1, beta2, eps;
    float weight_decay; /* decoupled; applied to tensors whose `decay` flag is set only */
    float grad_clip;    /* clip the global L2 norm of all gradients to this; 0: off */
} leash_adamw_config;

/* lr 3e-4, betas (0.9, 0.95), eps 1e-8, weight decay 0.1, clip 1.0, no warmup, constant. */
leash_adamw_config leash_adamw_defaults(void);
int leash_adamw_config_check(const leash_adamw_config *c);

typedef struct {
    leash_adamw_config cfg;
    size_t n;
    float *m, *v; /* (n) first and second moments */
    long step;    /* updates done */
} leash_adamw;

int leash_adamw_create(leash_adamw *opt, const leash_adamw_config *cfg, size_t n);
void leash_adamw_free(leash_adamw *opt);

/* The schedule's learning rate for update number `step` (0-based). */
double leash_lr_at(const leash_adamw_config *c, long step);

/* One update of the model's parameters from its gradients. Fails, changing nothing, when the gradient
 * norm is not finite. grad_norm (may be NULL) receives the norm before clipping; lr the rate used. */
int leash_adamw_step(leash_adamw *opt, leash_gpt *m, double *grad_norm, double *lr);

/* Optimiser state as one safetensors file ("adamw.m", "adamw.v", step in the metadata), atomic. */
int leash_adamw_save(const leash_adamw *opt, const char *path);
int leash_adamw_load(leash_adamw *opt, const char *path);

#endif
