/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <nettle/memops.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <assert.h>
#include <sys/random.h>
#include <time.h>

#include "constants.h"
#include "macro.h"
#include "protocol.h"
#include "util.h"

int random_bytes(void *buf, size_t len) {
        uint8_t *p = buf;

        while (len > 0) {
                /* Blocks until the pool is initialised, then never fails
                 * short except for signals or requests above 32 MiB. */
                ssize_t n = getrandom(p, len, 0);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t) n;
        }
        return 0;
}

int message_id_stamp(uint8_t *id) {
        struct timespec ts;
        uint64_t ms;

        if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
                return -errno;
        ms = (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
        for (size_t i = 0; i < 6; i++)
                id[i] = (uint8_t) (ms >> (8 * (5 - i)));
        return 0;
}

int message_id_new(uint8_t *id) {
        int r;

        static_assert(MSG_ID_LEN == 16, "6 bytes of time and 10 random");
        r = message_id_stamp(id);
        if (r < 0)
                return r;
        return random_bytes(id + 6, MSG_ID_LEN - 6);
}

void secure_wipe(void *p, size_t len) {
        if (p)
                explicit_bzero(p, len);
}

void *secure_free(void *p, size_t len) {
        secure_wipe(p, len);
        free(p);
        return NULL;
}

bool memeq_ct(const void *a, const void *b, size_t len) {
        return nettle_memeql_sec(a, b, len) != 0;
}

/* Length of the UTF-8 sequence at s (at most len bytes), or 0 when it is
 * not the shortest encoding of a scalar value in U+0001..U+10FFFF. The
 * ranges of the second byte are those of RFC 3629 section 4, which rule out
 * overlongs, surrogates and values above U+10FFFF in one place. */
static size_t utf8_sequence_len(const uint8_t *s, size_t len) {
        uint8_t c = s[0], lo = 0x80, hi = 0xBF;
        size_t n;

        if (c == 0)
                return 0;        /* user text never holds NUL */
        if (c < 0x80)
                return 1;
        if (c >= 0xC2 && c <= 0xDF)
                n = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
                n = 3;
                if (c == 0xE0)
                        lo = 0xA0;        /* overlong below U+0800 */
                else if (c == 0xED)
                        hi = 0x9F;        /* surrogates U+D800..U+DFFF */
        } else if (c >= 0xF0 && c <= 0xF4) {
                n = 4;
                if (c == 0xF0)
                        lo = 0x90;        /* overlong below U+10000 */
                else if (c == 0xF4)
                        hi = 0x8F;        /* above U+10FFFF */
        } else
                return 0;        /* continuation byte, C0, C1, F5..FF */

        if (len < n)
                return 0;
        if (s[1] < lo || s[1] > hi)
                return 0;
        for (size_t i = 2; i < n; i++)
                if (s[i] < 0x80 || s[i] > 0xBF)
                        return 0;
        return n;
}

bool utf8_valid(const void *s, size_t len) {
        const uint8_t *p = s;

        while (len > 0) {
                size_t n;

                /* ASCII but NUL, nearly all of a frame (base64, names,
                 * JSON's punctuation): a byte without the call. */
                if (*p > 0 && *p < 0x80) {
                        p++;
                        len--;
                        continue;
                }
                n = utf8_sequence_len(p, len);
                if (n == 0)
                        return false;
                p += n;
                len -= n;
        }
        return true;
}

size_t utf8_char(const void *s, size_t len, uint32_t *ret) {
        const uint8_t *p = s;
        size_t n = len > 0 ? utf8_sequence_len(p, len) : 0;
        uint32_t c;

        switch (n) {
        case 1:
                c = p[0];
                break;
        case 2:
                c = (uint32_t) (p[0] & 0x1F) << 6 | (p[1] & 0x3F);
                break;
        case 3:
                c = (uint32_t) (p[0] & 0x0F) << 12 | (uint32_t) (p[1] & 0x3F) << 6 | (p[2] & 0x3F);
                break;
        case 4:
                c = (uint32_t) (p[0] & 0x07) << 18 | (uint32_t) (p[1] & 0x3F) << 12 |
                    (uint32_t) (p[2] & 0x3F) << 6 | (p[3] & 0x3F);
                break;
        default:
                return 0;
        }
        *ret = c;
        return n;
}

bool unichar_unsafe(uint32_t c) {
        return c < 0x20 || c == 0x7F ||
               (c >= 0x80 && c <= 0x9F) ||              /* C1: CSI and friends */
               (c >= 0x202A && c <= 0x202E) ||          /* bidirectional embeddings and overrides */
               (c >= 0x2066 && c <= 0x2069) ||          /* bidirectional isolates */
               c == 0x2028 || c == 0x2029;              /* line and paragraph separators */
}

bool string_copy(char *dst, size_t size, const char *src) {
        size_t n = strnlen(src ?: "", size);
        bool fits = n < size;

        if (!fits)
                n = size - 1;
        memcpy(dst, src ?: "", n);
        dst[n] = 0;
        return fits;
}

char *string_sanitize(const char *s, char *buf, size_t size) {
        size_t len = s ? strlen(s) : 0, i = 0;

        if (size == 0)
                return buf;
        while (len > 0) {
                uint32_t c;
                size_t n = utf8_char(s, len, &c);
                bool keep = n > 0 && !unichar_unsafe(c);
                size_t out = keep ? n : 1;

                if (i + out >= size)
                        break;          /* never half a character */
                if (keep)
                        memcpy(buf + i, s, n);
                else
                        buf[i] = '?';
                i += out;
                n = MAX(n, (size_t) 1);
                s += n;
                len -= n;
        }
        buf[i] = '\0';
        return buf;
}

int parse_boolean(const char *s) {
        static const char *const yes[] = { "yes", "y", "true", "on", "1" };
        static const char *const no[] = { "no", "n", "false", "off", "0" };

        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                if (strcasecmp(s, yes[i]) == 0)
                        return 1;
        for (size_t i = 0; i < ELEMENTSOF(no); i++)
                if (strcasecmp(s, no[i]) == 0)
                        return 0;
        return -EINVAL;
}

static bool username_char(char c, bool first) {
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
                return true;
        return !first && (c == '.' || c == '_' || c == '-');
}

bool username_valid(const char *s) {
        size_t i;

        if (!s)
                return false;
        for (i = 0; s[i] != '\0'; i++) {
                if (i >= USERNAME_MAX)
                        return false;
                if (!username_char(s[i], i == 0))
                        return false;
        }
        return i > 0;
}

static uint64_t clock_usec(clockid_t clock) {
        struct timespec ts;

        /* Cannot fail for these clocks on Linux. */
        (void) clock_gettime(clock, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000u;
}

uint64_t now_unix(void) {
        return clock_usec(CLOCK_REALTIME) / USEC_PER_SEC;
}

const char *format_utc(uint64_t t, char buf[static FORMAT_UTC_MAX]) {
        time_t tt = (time_t) t;
        struct tm tm;

        if (t > (uint64_t) INT64_MAX || !gmtime_r(&tt, &tm) ||
            strftime(buf, FORMAT_UTC_MAX, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
                snprintf(buf, FORMAT_UTC_MAX, "%" PRIu64, t);
        return buf;
}

uint64_t now_monotonic_usec(void) {
        return clock_usec(CLOCK_MONOTONIC);
}

static int unhex(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

int hex_decode(const char *hex, uint8_t **ret, size_t *ret_len) {
        size_t len = strlen(hex);
        uint8_t *out;

        if (len % 2 != 0)
                return -EINVAL;

        /* At least one byte, so that "" yields a valid pointer too. */
        out = malloc(len / 2 + 1);
        if (!out)
                return -ENOMEM;

        for (size_t i = 0; i < len / 2; i++) {
                int h = unhex(hex[2 * i]), l = unhex(hex[2 * i + 1]);
                if (h < 0 || l < 0) {
                        free(out);
                        return -EINVAL;
                }
                out[i] = (uint8_t) (h << 4 | l);
        }

        *ret = out;
        *ret_len = len / 2;
        return 0;
}

uint64_t hash_seeded(uint64_t seed, const void *data, size_t len) {
        const uint8_t *p = data;
        uint64_t h = seed ^ UINT64_C(0xcbf29ce484222325);

        for (size_t i = 0; i < len; i++)
                h = (h ^ p[i]) * UINT64_C(0x100000001b3);
        h ^= h >> 33;
        h *= UINT64_C(0xff51afd7ed558ccd);
        h ^= h >> 33;
        h *= UINT64_C(0xc4ceb9fe1a85ec53);
        h ^= h >> 33;
        return h;
}
