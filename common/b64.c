/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <nettle/base64.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "macro.h"

int b64_encode(const void *data, size_t len, char **ret) {
        char *s;
        size_t n;

        if (len > SIZE_MAX / 2)
                return -ENOMEM;
        n = BASE64_ENCODE_RAW_LENGTH(len);
        s = malloc(n + 1);
        if (!s)
                return -ENOMEM;
        base64_encode_raw(s, len, data);
        s[n] = '\0';
        *ret = s;
        return 0;
}

int b64_encode_unpadded(const void *data, size_t len, char **ret) {
        char *s;
        size_t n;
        int r;

        r = b64_encode(data, len, &s);
        if (r < 0)
                return r;
        n = strlen(s);
        while (n > 0 && s[n - 1] == '=')
                s[--n] = '\0';
        *ret = s;
        return 0;
}

#define X 0xff
/* The 6-bit value of each byte of the alphabet, X for any other ('=' too:
 * padding is dealt with apart; NUL and non-ASCII bytes are X, so a string
 * that decodes holds neither). */
static const uint8_t b64_values[256] = {
        X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
        X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
        X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  62, X,  X,  X,  63,
        52, 53, 54, 55, 56, 57, 58, 59, 60, 61, X,  X,  X,  X,  X,  X,
        X,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14,
        15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, X,  X,  X,  X,  X,
        X,  26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
        41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, X,  X,  X,  X,  X,
        [128 ... 255] = X,
};

static unsigned b64_value(char c) {
        return b64_values[(uint8_t) c];
}
#undef X

/* Decoded here, not by Nettle: its decoder skips white space and takes
 * input without padding, so every character was looked at twice, once to
 * refuse what Nettle would let through and once by Nettle's per-character
 * calls, on the relay's every envelope. One table lookup per character
 * checks and decodes at once. */
int b64_decode_to(const char *s, size_t slen, uint8_t *out, size_t size, size_t *ret_len) {
        size_t pad = 0, n, i;

        /* Whole quanta; '=' only as the last one or two characters. */
        if (slen % 4 != 0)
                return -EINVAL;
        if (slen > 0 && s[slen - 1] == '=')
                pad = s[slen - 2] == '=' ? 2 : 1;
        n = slen / 4 * 3 - pad;
        if (n > size)
                return -EMSGSIZE;

        /* Every quantum but the last is four characters of data: checked
         * together, one test per quantum. */
        for (i = 0; i + 4 < slen; i += 4) {
                unsigned a = b64_value(s[i]), b = b64_value(s[i + 1]),
                         c = b64_value(s[i + 2]), d = b64_value(s[i + 3]);
                uint32_t q;

                if ((a | b | c | d) > 63)
                        return -EINVAL;
                q = a << 18 | b << 12 | c << 6 | d;
                *out++ = (uint8_t) (q >> 16);
                *out++ = (uint8_t) (q >> 8);
                *out++ = (uint8_t) q;
        }

        if (i < slen) {
                size_t k = 4 - pad;     /* characters of data */
                uint32_t q = 0;

                for (size_t j = 0; j < 4; j++) {
                        unsigned v = j < k ? b64_value(s[i + j]) : 0;

                        if (v > 63)
                                return -EINVAL;  /* not of the alphabet, or '=' within the data */
                        q = q << 6 | v;
                }
                /* Canonical: the bits of a padded quantum that make no
                 * byte are zero, so that each input has one encoding. */
                if ((pad == 1 && (q & 0xff)) || (pad == 2 && (q & 0xffff)))
                        return -EINVAL;
                *out++ = (uint8_t) (q >> 16);
                if (k > 2)
                        *out++ = (uint8_t) (q >> 8);
                if (k > 3)
                        *out = (uint8_t) q;
        }

        *ret_len = n;
        return 0;
}

int b64_decode(const char *s, size_t slen, uint8_t **ret, size_t *ret_len) {
        uint8_t *out;
        size_t n;
        int r;

        if (slen % 4 != 0)
                return -EINVAL;
        /* At least one byte, so that "" yields a valid pointer too. */
        out = malloc(slen / 4 * 3 + 1);
        if (!out)
                return -ENOMEM;
        r = b64_decode_to(s, slen, out, slen / 4 * 3, &n);
        if (r < 0) {
                free(out);
                return r;
        }
        *ret = out;
        *ret_len = n;
        return 0;
}
