# SPDX-License-Identifier: MIT
bin_PROGRAMS += scctl
SCCTL_CORE = \
	cli/cli.h cli/exit-codes.c cli/exit-codes.h \
	cli/output.c cli/output-json.c cli/output.h \
	cli/prekeys.c cli/prekeys.h \
	cli/ratchet-store.c cli/ratchet-store.h \
	cli/suite2-io.c cli/suite2-io.h \
	cli/seen.c cli/seen.h \
	cli/settings.c cli/settings.h \
	cli/state.c cli/state.h \
	cli/wait.c cli/wait.h
# Everything but main(), for the unit test of the command line.
SCCTL_VERBS = \
	cli/verbs.c cli/verbs.h \
	cli/client.c cli/client.h \
	cli/session.c cli/session.h \
	cli/chat.c \
	cli/connect.c \
	cli/line-edit.c cli/line-edit.h \
	cli/rotate.c \
	cli/admin.c cli/admin.h
scctl_SOURCES = $(SCCTL_CORE) $(SCCTL_VERBS) cli/main.c
SCCTL_CFLAGS = $(AM_CFLAGS) $(NETTLE_CFLAGS) $(HOGWEED_CFLAGS) $(GNUTLS_CFLAGS) \
	$(JSONC_CFLAGS) $(INIH_CFLAGS) $(SQLITE_CFLAGS)
scctl_CFLAGS = $(SCCTL_CFLAGS) $(LIBEDIT_CFLAGS)
# libedit is not linked: connect loads it (line-edit.h).
scctl_LDADD = $(COMMON_LIBS) $(INIH_LIBS) $(SQLITE_LIBS)

# Unit tests of the client's state directory and settings.
check_PROGRAMS += tests/unit/test-clistate
TESTS += tests/unit/test-clistate
tests_unit_test_clistate_SOURCES = tests/unit/test-clistate.c $(SCCTL_CORE)
tests_unit_test_clistate_CFLAGS = $(SCCTL_CFLAGS) $(CHECK_CFLAGS) -I$(top_srcdir)/cli
tests_unit_test_clistate_LDADD = $(COMMON_LIBS) $(INIH_LIBS) $(SQLITE_LIBS) $(CHECK_LIBS)

dist_man_MANS += man/scctl.1

# Unit tests of the suite-2 store: transactions, erasure, two processes.
check_PROGRAMS += tests/unit/test-ratchetstore
TESTS += tests/unit/test-ratchetstore
tests_unit_test_ratchetstore_SOURCES = tests/unit/test-ratchetstore.c $(SCCTL_CORE)
tests_unit_test_ratchetstore_CFLAGS = $(SCCTL_CFLAGS) $(CHECK_CFLAGS) -I$(top_srcdir)/cli
tests_unit_test_ratchetstore_LDADD = $(COMMON_LIBS) $(INIH_LIBS) $(SQLITE_LIBS) $(CHECK_LIBS)

# Unit tests of the client's session logic against a hostile relay.
check_PROGRAMS += tests/unit/test-clisession
TESTS += tests/unit/test-clisession
tests_unit_test_clisession_SOURCES = tests/unit/test-clisession.c $(SCCTL_CORE) \
	cli/client.c cli/client.h cli/session.c cli/session.h
tests_unit_test_clisession_CFLAGS = $(SCCTL_CFLAGS) $(CHECK_CFLAGS) -I$(top_srcdir)/cli
tests_unit_test_clisession_LDADD = $(COMMON_LIBS) $(INIH_LIBS) $(SQLITE_LIBS) $(CHECK_LIBS)

# Unit tests of the wait primitive and the errno <-> exit status table.
check_PROGRAMS += tests/unit/test-cliwait
TESTS += tests/unit/test-cliwait
tests_unit_test_cliwait_SOURCES = tests/unit/test-cliwait.c cli/wait.c cli/wait.h \
	cli/exit-codes.c cli/exit-codes.h
tests_unit_test_cliwait_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) -I$(top_srcdir)/cli
tests_unit_test_cliwait_LDADD = $(COMMON_LIBS) $(CHECK_LIBS)

# Unit tests of the command line: the option parsers' contract and the
# exit statuses it leads to.
check_PROGRAMS += tests/unit/test-cliverbs
TESTS += tests/unit/test-cliverbs
tests_unit_test_cliverbs_SOURCES = tests/unit/test-cliverbs.c $(SCCTL_CORE) $(SCCTL_VERBS)
tests_unit_test_cliverbs_CFLAGS = $(SCCTL_CFLAGS) $(LIBEDIT_CFLAGS) $(CHECK_CFLAGS) -I$(top_srcdir)/cli
tests_unit_test_cliverbs_LDADD = $(COMMON_LIBS) $(INIH_LIBS) $(SQLITE_LIBS) $(CHECK_LIBS)
