/* SPDX-License-Identifier: MIT */
#include <stddef.h>

#include "limit.h"
#include "macro.h"

static const struct {
        const char *name;
        const char *key;
} limits[] = {
#define LIMIT_ENTRY(kind, name, key) [kind] = { name, key },
        LIMIT_TABLE(LIMIT_ENTRY)
#undef LIMIT_ENTRY
};

const char *limit_name(Limit l) {
        return l >= 0 && (size_t) l < ELEMENTSOF(limits) ? limits[l].name : NULL;
}

const char *limit_config_key(Limit l) {
        return l >= 0 && (size_t) l < ELEMENTSOF(limits) ? limits[l].key : NULL;
}
