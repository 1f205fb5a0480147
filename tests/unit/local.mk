# SPDX-License-Identifier: MIT
UNIT_TESTS = \
	tests/unit/test-util \
	tests/unit/test-json \
	tests/unit/test-crypto \
	tests/unit/test-rsa \
	tests/unit/test-envelope \
	tests/unit/test-suite2 \
	tests/unit/test-handshake \
	tests/unit/test-rotation \
	tests/unit/test-frame \
	tests/unit/test-codec \
	tests/unit/test-transport
check_PROGRAMS += $(UNIT_TESTS)
TESTS += $(UNIT_TESTS)
UNIT_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(NETTLE_CFLAGS) $(HOGWEED_CFLAGS) \
	$(GNUTLS_CFLAGS) $(JSONC_CFLAGS)
UNIT_LDADD = $(COMMON_LIBS) $(CHECK_LIBS)
EXTRA_DIST += tests/unit/test-main.h tests/unit/sqlite-vfs.h

tests_unit_test_util_SOURCES = tests/unit/test-util.c
tests_unit_test_util_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_util_LDADD = $(UNIT_LDADD)
tests_unit_test_json_SOURCES = tests/unit/test-json.c
tests_unit_test_json_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_json_LDADD = $(UNIT_LDADD)
tests_unit_test_crypto_SOURCES = tests/unit/test-crypto.c
tests_unit_test_crypto_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_crypto_LDADD = $(UNIT_LDADD)
tests_unit_test_rsa_SOURCES = tests/unit/test-rsa.c
tests_unit_test_rsa_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_rsa_LDADD = $(UNIT_LDADD)
tests_unit_test_envelope_SOURCES = tests/unit/test-envelope.c
tests_unit_test_envelope_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_envelope_LDADD = $(UNIT_LDADD)
tests_unit_test_suite2_SOURCES = tests/unit/test-suite2.c
tests_unit_test_suite2_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_suite2_LDADD = $(UNIT_LDADD)
tests_unit_test_handshake_SOURCES = tests/unit/test-handshake.c
tests_unit_test_handshake_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_handshake_LDADD = $(UNIT_LDADD)
tests_unit_test_rotation_SOURCES = tests/unit/test-rotation.c
tests_unit_test_rotation_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_rotation_LDADD = $(UNIT_LDADD)
tests_unit_test_frame_SOURCES = tests/unit/test-frame.c
tests_unit_test_frame_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_frame_LDADD = $(UNIT_LDADD)
tests_unit_test_codec_SOURCES = tests/unit/test-codec.c
tests_unit_test_codec_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_codec_LDADD = $(UNIT_LDADD)
tests_unit_test_transport_SOURCES = tests/unit/test-transport.c
tests_unit_test_transport_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_transport_LDADD = $(UNIT_LDADD)
EXTRA_DIST += tests/vectors

# Each header compiles alone, with the flags of the programs (but not
# AM_CPPFLAGS' quoted paths, which no header uses and a shell splits badly).
TESTS += tests/headers.sh
EXTRA_DIST += tests/headers.sh
AM_TESTS_ENVIRONMENT += \
	SC_HEADER_CC='$(CC)'; export SC_HEADER_CC; \
	SC_HEADER_CFLAGS='-include $(abs_top_builddir)/config.h $(CPPFLAGS) $(AM_CFLAGS) $(CFLAGS) \
		$(NETTLE_CFLAGS) $(HOGWEED_CFLAGS) $(GNUTLS_CFLAGS) $(JSONC_CFLAGS) $(SYSTEMD_CFLAGS) \
		$(SQLITE_CFLAGS) $(INIH_CFLAGS) $(LIBEDIT_CFLAGS)'; export SC_HEADER_CFLAGS;

# The relay and its session index, driven without a network (the daemon's
# other module tests are listed in daemon/local.mk).
check_PROGRAMS += tests/unit/test-relay
TESTS += tests/unit/test-relay
tests_unit_test_relay_SOURCES = tests/unit/test-relay.c
tests_unit_test_relay_CFLAGS = $(DAEMON_CFLAGS) $(CHECK_CFLAGS) -I$(top_srcdir)/daemon
tests_unit_test_relay_LDADD = $(DAEMON_LIBS) $(CHECK_LIBS)

# test-store (built in daemon/local.mk) once more with a PostgreSQL
# database of its own besides SQLite (tests/pg.sh starts the server).
TESTS += tests/unit/test-store-pg.sh
EXTRA_DIST += tests/unit/test-store-pg.sh
