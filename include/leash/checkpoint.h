/* A checkpoint directory replaced atomically as a whole: OUT/checkpoint/.
 *
 * A trainer writes its files (weights, optimiser state, trainer state; each fsynced) into the directory
 * leash_checkpoint_begin() prepares, OUT/checkpoint.new, then leash_checkpoint_commit() renames
 * OUT/checkpoint to OUT/checkpoint.old, OUT/checkpoint.new to OUT/checkpoint, fsyncs OUT and removes the old
 * set. Whatever kills the writer, a complete set survives: under checkpoint/, or (between the two renames)
 * under checkpoint.old/, which leash_checkpoint_find() takes back. A half-written checkpoint.new is never
 * read, and is removed by the next begin.
 */
#ifndef LEASH_CHECKPOINT_H
#define LEASH_CHECKPOINT_H

#include <stddef.h>

/* Empties and creates OUT/checkpoint.new; its path goes to dir (cap bytes). */
int leash_checkpoint_begin(const char *out_dir, char *dir, size_t cap);
/* Makes OUT/checkpoint.new the checkpoint. */
int leash_checkpoint_commit(const char *out_dir);
/* The path of OUT's checkpoint in dir (recovering one a kill left as checkpoint.old); LEASH_EINVAL with a
 * message naming OUT when there is none. */
int leash_checkpoint_find(const char *out_dir, char *dir, size_t cap);

/* Keeps the complete lines of a JSONL log whose "step" is at most max_step: what a run resumed from the
 * checkpoint of step max_step must find (a killed run may have logged later steps, or half a line). A
 * missing file is fine. */
int leash_log_trim(const char *path, int max_step);

#endif
