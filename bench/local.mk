# SPDX-License-Identifier: MIT
#
# Benchmarks: run by hand (README.md, "Benchmarks"). make check runs each
# once in a quick mode that only checks that it still works; no timing is
# judged there, the machine may be busy.

EXTRA_DIST += bench/flood
TESTS += bench/flood-smoke.sh
EXTRA_DIST += bench/flood-smoke.sh
