/* Thread-local error messages: see include/leash/error.h. */
#include "leash/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char errmsg[1024];

const char *leash_errmsg(void) { return errmsg; }

const char *leash_strerror(int code) {
    switch (code) {
    case LEASH_OK: return "ok";
    case LEASH_EINVAL: return "invalid argument";
    case LEASH_ENUMERIC: return "non-finite number";
    case LEASH_ENOMEM: return "out of memory";
    case LEASH_EIO: return "i/o error";
    case LEASH_EFORMAT: return "malformed input";
    default: return "unknown error";
    }
}

int leash_fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    va_end(ap);
    return code;
}

int leash_fail_wrap(int code, const char *fmt, ...) {
    char inner[sizeof errmsg];
    memcpy(inner, errmsg, sizeof inner);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    va_end(ap);
    // append ": <inner>", cut at the end of the buffer
    size_t used = strlen(errmsg);
    const char *parts[2] = {": ", inner};
    for (int k = 0; k < 2; k++) {
        size_t len = strlen(parts[k]);
        if (len > sizeof errmsg - 1 - used) len = sizeof errmsg - 1 - used;
        memcpy(errmsg + used, parts[k], len);
        used += len;
    }
    errmsg[used] = '\0';
    return code;
}
