/* CRC-32C (Castagnoli), table-driven: see src/crc32c.h. */
#define _POSIX_C_SOURCE 200809L
#include "crc32c.h"

#include <pthread.h>

static uint32_t table[256]; // table[b]: the CRC register after shifting byte b through 8 rounds

static void table_init(void) {
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        table[b] = c;
    }
}

uint32_t crc32c_update(uint32_t crc, const void *data, size_t n) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, table_init); // built on first use, once, whichever thread comes first
    const unsigned char *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

uint32_t crc32c_masked(const void *data, size_t n) {
    uint32_t crc = crc32c_update(0, data, n);
    return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u;
}
