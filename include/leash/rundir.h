/* The output directory of a run (pretrain, ppo, grpo, rm train, judge train): one run at a time, and no
 * run replaced by accident.
 *
 * A run holds an exclusive lock (flock) on OUT/.lock from before its first write to its exit; a second run
 * into the same directory is refused with the first one's PID, which the lock file holds. The lock ends
 * with the process, however it ends, so a killed run leaves no stale lock behind (the file stays).
 * A directory that already holds a run (a checkpoint or metrics.jsonl) is continued with --resume or
 * replaced with --overwrite, never silently written over. */
#ifndef LEASH_RUNDIR_H
#define LEASH_RUNDIR_H

/* Creates dir if needed and locks it for this process; *fd is the lock (kept open until leash_rundir_unlock
 * or exit). Another process's lock is an error (LEASH_EIO) naming dir and its PID. Then a run already in
 * dir (a checkpoint, or metrics.jsonl) needs resume or overwrite (else LEASH_EINVAL, saying so); overwrite
 * removes its checkpoints and logs, so that nothing of it mixes with the new run. */
int leash_rundir_open(const char *dir, int resume, int overwrite, int *fd);
void leash_rundir_unlock(int fd);

/* Removes a file or a directory tree (symbolic links are removed, not followed); fine if it is absent. */
int leash_remove_tree(const char *path);

#endif
