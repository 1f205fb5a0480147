# SPDX-License-Identifier: MIT
#
# Benchmarks: run by hand (README.md, "Benchmarks"). make check runs each
# once in a quick mode that only checks that it still works; no timing is
# judged there, the machine may be busy.

EXTRA_DIST += bench/flood
TESTS += bench/flood-smoke.sh
EXTRA_DIST += bench/flood-smoke.sh

# suite-cost: end-to-end msg/s of suite 2 beside suite 1 (issue 13).
EXTRA_DIST += bench/suite-cost
TESTS += bench/suite-cost-smoke.sh
EXTRA_DIST += bench/suite-cost-smoke.sh

# sc-bench: the relay against the machine's limits, one table (issue 10).
# Built by make check (for its smoke run) and by make bench.
check_PROGRAMS += bench/sc-bench
bench_sc_bench_SOURCES = bench/sc-bench.c bench/conn.c bench/conn.h bench/xmpp.c bench/xmpp.h
bench_sc_bench_CFLAGS = $(AM_CFLAGS) $(NETTLE_CFLAGS) $(HOGWEED_CFLAGS) $(GNUTLS_CFLAGS) \
	$(JSONC_CFLAGS) $(SQLITE_CFLAGS) $(LIBPQ_CFLAGS)
bench_sc_bench_LDADD = $(COMMON_LIBS) $(SQLITE_LIBS) $(LIBPQ_LIBS) -lm
TESTS += bench/sc-bench-smoke.sh
EXTRA_DIST += bench/sc-bench-smoke.sh

# The full run, on a release build (configure CFLAGS=-O2, no sanitizers);
# SC_BENCH_FLAGS passes options (--json, --pairs 1,10 ...).
# bench/ is also a directory, so "bench" is forced (automake will not have
# a second, unconditional .PHONY beside fuzz/local.mk's).
bench: bench-force securechatd$(EXEEXT) scctl$(EXEEXT) bench/sc-bench$(EXEEXT)
	$(top_builddir)/bench/sc-bench --builddir $(top_builddir) $(SC_BENCH_FLAGS)
bench-force:
