/* SPDX-License-Identifier: MIT */
/*
 * Shared by every unit test: run one check Suite with TAP on stdout (the
 * automake TAP driver then counts every test case) and exit 0 only if all
 * passed. CK_TAP_LOG_FILE_NAME and CK_VERBOSITY come from the environment
 * that Makefile.am sets; run by hand, the test prints check's usual output.
 */
#pragma once

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

/* Path of a vector file: $SC_VECTORS_DIR/name (tests/vectors by default). */
static inline const char *vector_path(const char *name) {
        static char path[4096];
        const char *dir = getenv("SC_VECTORS_DIR");

        snprintf(path, sizeof(path), "%s/%s", dir ? dir : "tests/vectors", name);
        return path;
}

static inline int run_suite(Suite *s) {
        SRunner *sr = srunner_create(s);
        int failed;

        srunner_run_all(sr, CK_ENV);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
