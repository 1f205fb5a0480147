/* SPDX-License-Identifier: MIT */
/*
 * sc-json: pick values out of `scctl --json` output, one JSON object per
 * line, so that integration tests can compare received text byte for byte
 * (a shell cannot undo JSON string escapes reliably, and jq is not a build
 * dependency).
 *
 *   sc-json [-m KEY=VALUE]... TYPE [FIELD]      each match's FIELD, one per line
 *   sc-json [-m KEY=VALUE]... -n N TYPE FIELD   the N-th match's FIELD (1-based),
 *                                               exactly its bytes, no newline
 *   sc-json [-m KEY=VALUE]... -c TYPE           the number of matches
 *
 * An object matches when its "type" is TYPE and, for every -m, its member
 * KEY is a string equal to VALUE (or a number, boolean or null whose JSON
 * text is VALUE). A string FIELD prints as its raw bytes; anything else as
 * JSON text. Lines that are not JSON objects are skipped (stderr may be
 * mixed in). Exit status: 0, 1 when -n names no match or FIELD is missing
 * there, 2 on usage errors.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#define MATCH_MAX 8

typedef struct Match {
        const char *key;
        const char *value;
} Match;

static Match matches[MATCH_MAX];
static size_t n_matches;

static bool member_is(json_object *o, const char *key, const char *value) {
        json_object *v = NULL;

        if (!json_object_object_get_ex(o, key, &v))
                return false;
        if (json_object_is_type(v, json_type_string))
                return strcmp(json_object_get_string(v), value) == 0;
        return strcmp(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN), value) == 0;
}

static bool object_matches(json_object *o, const char *type) {
        if (!json_object_is_type(o, json_type_object) || !member_is(o, "type", type))
                return false;
        for (size_t i = 0; i < n_matches; i++)
                if (!member_is(o, matches[i].key, matches[i].value))
                        return false;
        return true;
}

/* Print a member's value: strings as their bytes, the rest as JSON.
 * Returns false when the member is missing. */
static bool print_member(json_object *o, const char *field, bool newline) {
        json_object *v = NULL;

        if (!json_object_object_get_ex(o, field, &v))
                return false;
        if (json_object_is_type(v, json_type_string))
                fwrite(json_object_get_string(v), 1, (size_t) json_object_get_string_len(v), stdout);
        else
                fputs(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN), stdout);
        if (newline)
                putchar('\n');
        return true;
}

static int usage(void) {
        fputs("Usage: sc-json [-m KEY=VALUE]... [-c | -n N] TYPE [FIELD] < LINES\n", stderr);
        return 2;
}

int main(int argc, char *argv[]) {
        const char *type, *field;
        bool count = false;
        long nth = 0, seen = 0;
        char *line = NULL;
        size_t cap = 0;
        int c, status = 0;

        while ((c = getopt(argc, argv, "m:n:c")) >= 0)
                switch (c) {
                case 'm': {
                        char *eq = strchr(optarg, '=');

                        if (!eq || n_matches >= MATCH_MAX)
                                return usage();
                        *eq = '\0';
                        matches[n_matches++] = (Match) { optarg, eq + 1 };
                        break;
                }
                case 'n':
                        nth = strtol(optarg, NULL, 10);
                        if (nth < 1)
                                return usage();
                        break;
                case 'c':
                        count = true;
                        break;
                default:
                        return usage();
                }
        if (optind >= argc || argc - optind > 2 || (count && nth > 0))
                return usage();
        type = argv[optind];
        field = optind + 1 < argc ? argv[optind + 1] : NULL;
        if (!count && !field)
                return usage();

        if (nth > 0)
                status = 1;     /* until the match is found */
        while (getline(&line, &cap, stdin) > 0) {
                json_object *o = json_tokener_parse(line);

                if (o && object_matches(o, type)) {
                        seen++;
                        if (nth == seen) {
                                status = print_member(o, field, false) ? 0 : 1;
                                json_object_put(o);
                                break;
                        }
                        if (!count && nth == 0 && !print_member(o, field, true))
                                status = 1;
                }
                json_object_put(o);
        }
        free(line);
        if (count)
                printf("%ld\n", seen);
        return status;
}
