/* CRC-32C (Castagnoli): the checksum of TFRecord framing, which TensorBoard's event files use.
 *
 * Reflected polynomial 0x82F63B78, initial value and final XOR 0xFFFFFFFF (iSCSI, RFC 3720; the check value
 * crc32c("123456789") is 0xE3069283). Hand-written because Debian has no C library for it (only
 * python3-crc32c, which the tests compare against). Table-driven, one byte at a time: event records are
 * small, so speed does not matter here. Internal to the library. */
#ifndef LEASH_CRC32C_H
#define LEASH_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continues a CRC over n more bytes: crc32c_update(0, ...) starts one, and feeding a buffer in pieces
 * gives the CRC of the whole. */
uint32_t crc32c_update(uint32_t crc, const void *data, size_t n);

/* TFRecord's masked CRC of data: rotate right by 15 bits and add 0xA282EAD8 (so that a CRC of bytes that
 * hold CRCs is not a trivial function of them). */
uint32_t crc32c_masked(const void *data, size_t n);

#endif
