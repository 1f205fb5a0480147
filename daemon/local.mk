# SPDX-License-Identifier: MIT
#
# securechatd: main.c plus a convenience library of its modules, which the
# unit tests link as well.

DAEMON_CFLAGS = $(AM_CFLAGS) $(NETTLE_CFLAGS) $(HOGWEED_CFLAGS) $(GNUTLS_CFLAGS) \
	$(JSONC_CFLAGS) $(SYSTEMD_CFLAGS) $(SQLITE_CFLAGS) $(LIBPQ_CFLAGS) $(INIH_CFLAGS)
DAEMON_LIBS = daemon/libsecurechatd.a $(COMMON_LIBS) $(SYSTEMD_LIBS) $(SQLITE_LIBS) \
	$(LIBPQ_LIBS) $(INIH_LIBS)

noinst_LIBRARIES += daemon/libsecurechatd.a
daemon_libsecurechatd_a_SOURCES = \
	daemon/events.h \
	daemon/log.c daemon/log.h \
	daemon/conf.c daemon/conf.h \
	daemon/sockets.c daemon/sockets.h \
	daemon/store.c daemon/store.h daemon/store-backend.h \
	daemon/store-sqlite.c daemon/store-pg.c \
	daemon/store-writer.c daemon/store-writer.h \
	daemon/wal-checkpointer.c daemon/wal-checkpointer.h \
	daemon/cluster.c daemon/cluster.h \
	daemon/state.c daemon/state.h \
	daemon/stream.c daemon/stream.h \
	daemon/listener.c daemon/listener.h \
	daemon/forward.h \
	daemon/session.c daemon/session.h \
	daemon/session-index.c daemon/session-index.h \
	daemon/relay.c daemon/relay.h \
	daemon/manager.c daemon/manager.h \
	daemon/varlink-server.c daemon/varlink-server.h \
	daemon/control.c daemon/control.h \
	daemon/limit.c daemon/limit.h \
	daemon/anvil.c daemon/anvil.h \
	daemon/reload.c daemon/reload.h
daemon_libsecurechatd_a_CFLAGS = $(DAEMON_CFLAGS)

sbin_PROGRAMS += securechatd
securechatd_SOURCES = daemon/main.c
securechatd_CFLAGS = $(DAEMON_CFLAGS)
securechatd_LDADD = $(DAEMON_LIBS)

# Unit tests of the daemon's modules (TAP through check, like tests/unit).
DAEMON_UNIT_TESTS = \
	tests/unit/test-config \
	tests/unit/test-anvil \
	tests/unit/test-store \
	tests/unit/test-varlink \
	tests/unit/test-stream \
	tests/unit/test-listener
check_PROGRAMS += $(DAEMON_UNIT_TESTS)
TESTS += $(DAEMON_UNIT_TESTS)
tests_unit_test_config_SOURCES = tests/unit/test-config.c
tests_unit_test_config_CFLAGS = $(DAEMON_CFLAGS) $(CHECK_CFLAGS) -I$(top_srcdir)/daemon
tests_unit_test_config_LDADD = $(DAEMON_LIBS) $(CHECK_LIBS)
tests_unit_test_anvil_SOURCES = tests/unit/test-anvil.c
tests_unit_test_anvil_CFLAGS = $(DAEMON_CFLAGS) $(CHECK_CFLAGS) -I$(top_srcdir)/daemon
tests_unit_test_anvil_LDADD = $(DAEMON_LIBS) $(CHECK_LIBS)
tests_unit_test_store_SOURCES = tests/unit/test-store.c
tests_unit_test_store_CFLAGS = $(DAEMON_CFLAGS) $(CHECK_CFLAGS) -I$(top_srcdir)/daemon
tests_unit_test_store_LDADD = $(DAEMON_LIBS) $(CHECK_LIBS)
tests_unit_test_varlink_SOURCES = tests/unit/test-varlink.c
tests_unit_test_varlink_CFLAGS = $(DAEMON_CFLAGS) $(CHECK_CFLAGS) -I$(top_srcdir)/daemon
tests_unit_test_varlink_LDADD = $(DAEMON_LIBS) $(CHECK_LIBS)
tests_unit_test_stream_SOURCES = tests/unit/test-stream.c
tests_unit_test_stream_CFLAGS = $(DAEMON_CFLAGS) $(CHECK_CFLAGS) -I$(top_srcdir)/daemon
tests_unit_test_stream_LDADD = $(DAEMON_LIBS) $(CHECK_LIBS)
tests_unit_test_listener_SOURCES = tests/unit/test-listener.c
tests_unit_test_listener_CFLAGS = $(DAEMON_CFLAGS) $(CHECK_CFLAGS) -I$(top_srcdir)/daemon
tests_unit_test_listener_LDADD = $(DAEMON_LIBS) $(CHECK_LIBS)

dist_man_MANS += man/securechatd.8 man/securechatd.conf.5
EXTRA_DIST += daemon/securechatd.conf.example

# A scriptable raw-protocol client for integration tests (garbage,
# zero-length and oversized frames, out-of-order frames, slow readers).
check_PROGRAMS += tests/integration/sc-raw
tests_integration_sc_raw_SOURCES = tests/integration/sc-raw.c
tests_integration_sc_raw_CFLAGS = $(AM_CFLAGS) $(NETTLE_CFLAGS) $(HOGWEED_CFLAGS) \
	$(GNUTLS_CFLAGS) $(JSONC_CFLAGS)
tests_integration_sc_raw_LDADD = $(COMMON_LIBS)

# A raw Varlink client for the control socket's integration tests: sends
# calls (or any bytes) and prints every reply as one line.
check_PROGRAMS += tests/integration/sc-varlink
tests_integration_sc_varlink_SOURCES = tests/integration/sc-varlink.c
tests_integration_sc_varlink_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS)
tests_integration_sc_varlink_LDADD = $(COMMON_LIBS)

# The configuration file, every key commented out with its default
# (tests/conf-example.sh keeps it in step with the daemon's table).
# "make install" never replaces one that is there already, and
# "make uninstall" removes it only if it was not changed.
securechatconfdir = $(sysconfdir)/securechat
install-data-local: install-securechatd-conf
install-securechatd-conf:
	$(MKDIR_P) '$(DESTDIR)$(securechatconfdir)'
	@if test -e '$(DESTDIR)$(securechatconfdir)/securechatd.conf'; then \
		echo "keeping $(DESTDIR)$(securechatconfdir)/securechatd.conf"; \
	else \
		echo " $(INSTALL_DATA) securechatd.conf.example '$(DESTDIR)$(securechatconfdir)/securechatd.conf'"; \
		$(INSTALL_DATA) $(srcdir)/daemon/securechatd.conf.example \
			'$(DESTDIR)$(securechatconfdir)/securechatd.conf'; \
	fi
uninstall-local: uninstall-securechatd-conf
uninstall-securechatd-conf:
	@f='$(DESTDIR)$(securechatconfdir)/securechatd.conf'; \
	if cmp -s $(srcdir)/daemon/securechatd.conf.example "$$f"; then \
		echo " rm -f $$f"; rm -f "$$f"; \
	fi

TESTS += tests/conf-example.sh
EXTRA_DIST += tests/conf-example.sh
