/* SPDX-License-Identifier: MIT */
/* Small helpers every scctl module uses. */
#pragma once

#include <stdbool.h>
#include <string.h>

#include "constants.h"

static inline bool streq(const char *a, const char *b) {
        return strcmp(a, b) == 0;
}

static inline bool strempty(const char *s) {
        return !s || !s[0];
}
