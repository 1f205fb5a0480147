/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for securechatd's configuration parser. The whole input
 * is parsed twice: as a configuration file (config_parse_string(), the
 * code path of config_parse_file()) and as a -o KEY=VALUE argument
 * (config_parse_override()); the text after the first '=' also goes to the
 * value syntaxes directly.
 *
 * Checks, besides the sanitizers: the error contract (a message naming the
 * source exactly when parsing failed, only -EINVAL/-ERANGE/-ENOMEM), that
 * an accepted file dumps as a file that reads back the same, and that every
 * duration and size that parses formats back to itself.
 * conf.c does not log; nothing here writes files.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "conf.h"
#include "macro.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NAME "fuzz.conf"

static void check_error(int r, const char *error, const char *prefix) {
        if (r == 0) {
                if (error)
                        abort();
                return;
        }
        if (r != -EINVAL && r != -ERANGE && r != -ENOMEM)
                abort();
        if (r != -ENOMEM && (!error || strncmp(error, prefix, strlen(prefix)) != 0))
                abort();
}

static size_t longest_line(const char *s) {
        size_t max = 0;

        for (;;) {
                size_t n = strcspn(s, "\n");

                if (n > max)
                        max = n;
                if (s[n] == '\0')
                        return max;
                s += n + 1;
        }
}

static void check_file(const uint8_t *data, size_t size) {
        _cleanup_(config_freep) Config *c = NULL, *d = NULL;
        _cleanup_(freep) char *error = NULL, *dump = NULL, *dump2 = NULL;
        size_t dump_size = 0, dump2_size = 0;
        FILE *f;
        int r;

        if (config_new(&c) < 0)
                return;
        r = config_parse_string(c, NAME, (const char *) data, size, &error);
        check_error(r, error, NAME ":");
        if (r < 0)
                return;

        free(error);
        error = NULL;
        r = config_verify(c, &error);
        check_error(r, error, "configuration: ");

        /* What was accepted prints as a file that reads back the same
         * (unless a line got too long for inih's buffer by the spaces
         * config_dump() puts around '='). */
        f = open_memstream(&dump, &dump_size);
        if (!f)
                return;
        config_dump(c, f);
        if (fclose(f) != 0)
                return;
        if (longest_line(dump) + 3 >= INI_MAX_LINE)
                return;

        if (config_new(&d) < 0)
                return;
        r = config_parse_string(d, "dump", dump, dump_size, NULL);
        if (r == -ENOMEM)
                return;
        if (r < 0)
                abort();
        f = open_memstream(&dump2, &dump2_size);
        if (!f)
                return;
        config_dump(d, f);
        if (fclose(f) != 0)
                return;
        if (dump_size != dump2_size || memcmp(dump, dump2, dump_size) != 0)
                abort();
}

static void check_duration(const char *s) {
        char buf[64];
        uint64_t v, w;

        if (config_parse_duration(s, &v) < 0)
                return;
        config_format_duration(v, buf, sizeof(buf));
        if (config_parse_duration(buf, &w) < 0 || w != v)
                abort();
}

static void check_size(const char *s) {
        char buf[64];
        uint64_t v, w;

        if (config_parse_size(s, &v) < 0)
                return;
        config_format_size(v, buf, sizeof(buf));
        if (config_parse_size(buf, &w) < 0 || w != v)
                abort();
}

static void check_override(const uint8_t *data, size_t size) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(freep) char *s = NULL, *error = NULL;
        const char *value;
        bool b;
        int r;

        /* A command-line argument: up to the first NUL. */
        s = strndup((const char *) data, size);
        if (!s)
                return;

        if (config_new(&c) < 0)
                return;
        r = config_parse_override(c, s, "-o", &error);
        check_error(r, error, "-o: ");

        value = strchr(s, '=');
        value = value ? value + 1 : s;
        check_duration(value);
        check_size(value);
        (void) config_parse_bool(value, &b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        /* Config files are small; longer inputs only slow the search down. */
        if (size > 16384)
                return 0;
        check_file(data, size);
        check_override(data, size);
        return 0;
}
