/* Error codes and messages.
 *
 * The library never prints and never exits. A function that can fail returns an int status
 * (LEASH_OK or a negative LEASH_E* code) and leaves a message for the caller in a thread-local
 * buffer, read with leash_errmsg(). Messages name the argument or file, what was expected, what was
 * found, and what to do.
 */
#ifndef LEASH_ERROR_H
#define LEASH_ERROR_H

enum {
    LEASH_OK = 0,
    LEASH_EINVAL = -1,  /* an argument outside its accepted range (V = 0, beta < 0, ...) */
    LEASH_ENUMERIC = -2, /* a NaN or Inf in the input, or a result that does not fit float32 */
    LEASH_ENOMEM = -3,  /* allocation failed */
    LEASH_EIO = -4,     /* a file could not be read or written */
    LEASH_EFORMAT = -5, /* a file or text that does not parse */
};

/* The message of the last failure on this thread ("" if none). */
const char *leash_errmsg(void);

/* Short name of a status code: "ok", "invalid argument", ... */
const char *leash_strerror(int code);

/* Records a printf-style message for this thread and returns `code`; for use inside the library:
 *     if (V <= 0) return leash_fail(LEASH_EINVAL, "V = %d; the vocabulary size must be >= 1", V); */
int leash_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Puts a printf-style context before this thread's current message ("row 3: <message>") and returns
 * `code`; for a caller that adds where a failure happened to the callee's message. */
int leash_fail_wrap(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
