/* TensorBoard event files: scalars that TensorBoard (and anything that reads its format) plots.
 *
 * leash_tb_open(&w, dir) creates DIR/events.out.tfevents.<unix time>.<hostname> (the names TensorBoard looks
 * for in a log directory; a file of that name already there gets a ".N" suffix instead of being written
 * over) and writes the file_version event "brain.Event:2". Each leash_tb_scalar is one Event {wall_time,
 * step, summary {value {tag, simple_value}}}: the Event and Summary messages of TensorFlow's event.proto and
 * summary.proto (proto/tensorboard_event.proto, encoded by protobuf-c), framed as TFRecords: the data's
 * length as uint64 little-endian, the masked CRC-32C of those 8 bytes, the data, the masked CRC-32C of the
 * data. simple_value is float32, as TensorBoard stores it: a value beyond +-3.4e38 becomes +-inf.
 *
 * Records go through a stdio buffer; leash_tb_flush hands them to the operating system (TensorBoard reads a
 * growing file as it grows). Every error names the file. */
#ifndef LEASH_TENSORBOARD_H
#define LEASH_TENSORBOARD_H

#include <stdint.h>

typedef struct leash_tb leash_tb;

/* Creates dir if needed (one level) and the event file in it. */
int leash_tb_open(leash_tb **w, const char *dir);
/* The event file's path. */
const char *leash_tb_path(const leash_tb *w);
/* One scalar: tag (non-empty UTF-8, e.g. "objective/kl"), step, value, wall_time in seconds since the
 * Unix epoch (TensorBoard's "relative" and "wall" axes). */
int leash_tb_scalar(leash_tb *w, const char *tag, int64_t step, double value, double wall_time);
int leash_tb_flush(leash_tb *w);
/* Flushes, closes and frees w (NULL is fine); the status says whether every record reached the file. */
int leash_tb_close(leash_tb *w);

#endif
