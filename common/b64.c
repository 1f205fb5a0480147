/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <nettle/base64.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"

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

static bool b64_alphabet(char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
               (c >= '0' && c <= '9') || c == '+' || c == '/';
}

int b64_decode(const char *s, size_t slen, uint8_t **ret, size_t *ret_len) {
        struct base64_decode_ctx ctx;
        size_t body, n = 0;
        uint8_t *out;

        /* Nettle's decoder skips white space and accepts input without
         * padding, so the shape is checked here first: whole quanta, only
         * alphabet characters, and '=' only as the last one or two. */
        if (slen % 4 != 0)
                return -EINVAL;
        if (slen > SIZE_MAX / 8)        /* BASE64_DECODE_LENGTH would overflow */
                return -ENOMEM;
        body = slen;
        if (body > 0 && s[body - 1] == '=')
                body--;
        if (body > 0 && s[body - 1] == '=')
                body--;
        for (size_t i = 0; i < body; i++)
                if (!b64_alphabet(s[i]))
                        return -EINVAL;

        /* At least one byte, so that "" yields a valid pointer too. */
        out = malloc(BASE64_DECODE_LENGTH(slen) + 1);
        if (!out)
                return -ENOMEM;

        /* Nettle refuses data after padding, a padded quantum whose unused
         * bits are not zero, and a missing or excess '='. */
        base64_decode_init(&ctx);
        if (!base64_decode_update(&ctx, &n, out, slen, s) || !base64_decode_final(&ctx)) {
                free(out);
                return -EINVAL;
        }

        *ret = out;
        *ret_len = n;
        return 0;
}
