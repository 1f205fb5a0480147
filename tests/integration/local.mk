# SPDX-License-Identifier: MIT
#
# Integration tests: the real securechatd on a random loopback port with a
# temporary state directory, and real scctl processes with separate homes
# (tests/integration/lib.sh). Each script speaks TAP. securechatd and scctl
# come from "make all"; sc-raw (rule in daemon/local.mk) and sc-json from
# "make check". The *-notls.sh scripts run the same scripts against a relay
# with tls=no and clients with --no-tls; the *-pg.sh scripts run them
# against a relay on PostgreSQL, on a private server each script starts
# (tests/pg.sh), and cluster.sh runs several relays on one database.
# hostile.sh has no -pg twin: its relays are fakes, with no database.

INTEGRATION_TESTS = \
	tests/integration/chat.sh \
	tests/integration/offline.sh \
	tests/integration/refusals.sh \
	tests/integration/tamper.sh \
	tests/integration/frames.sh \
	tests/integration/limits.sh \
	tests/integration/hostile.sh \
	tests/integration/tls-cert.sh \
	tests/integration/chat-notls.sh \
	tests/integration/offline-notls.sh \
	tests/integration/refusals-notls.sh \
	tests/integration/tamper-notls.sh \
	tests/integration/frames-notls.sh \
	tests/integration/close.sh \
	tests/integration/close-notls.sh \
	tests/integration/limits-notls.sh \
	tests/integration/admin.sh \
	tests/integration/startup.sh \
	tests/integration/memory.sh \
	tests/integration/disk.sh \
	tests/integration/prekeys.sh \
	tests/integration/suite2.sh \
	tests/integration/rotate.sh \
	tests/integration/pipeline.sh \
	tests/integration/cluster-presence.sh \
	tests/integration/identity-key.sh \
	tests/integration/welcome-key.sh \
	tests/integration/chat-pg.sh \
	tests/integration/offline-pg.sh \
	tests/integration/limits-pg.sh \
	tests/integration/frames-pg.sh \
	tests/integration/refusals-pg.sh \
	tests/integration/tamper-pg.sh \
	tests/integration/prekeys-pg.sh \
	tests/integration/rotate-pg.sh \
	tests/integration/suite2-pg.sh \
	tests/integration/close-pg.sh \
	tests/integration/pipeline-pg.sh \
	tests/integration/disk-pg.sh \
	tests/integration/admin-pg.sh \
	tests/integration/cluster.sh \
	tests/integration/pg-nowait.sh

TESTS += $(INTEGRATION_TESTS)
EXTRA_DIST += $(INTEGRATION_TESTS) tests/integration/lib.sh tests/tap.sh tests/pg.sh

# Picks fields out of "scctl --json" output, for byte-exact comparisons.
check_PROGRAMS += tests/integration/sc-json
tests_integration_sc_json_SOURCES = tests/integration/sc-json.c
tests_integration_sc_json_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS)
tests_integration_sc_json_LDADD = $(JSONC_LIBS)

# The attacker of suite2.sh: opens recorded suite-2 envelopes with whatever
# a state directory still holds.
check_PROGRAMS += tests/integration/sc-s2open
tests_integration_sc_s2open_SOURCES = tests/integration/sc-s2open.c
tests_integration_sc_s2open_CFLAGS = $(AM_CFLAGS) $(NETTLE_CFLAGS) $(HOGWEED_CFLAGS) \
	$(GNUTLS_CFLAGS) $(JSONC_CFLAGS) $(SQLITE_CFLAGS)
tests_integration_sc_s2open_LDADD = $(COMMON_LIBS) $(SQLITE_LIBS)
