# SPDX-License-Identifier: MIT
noinst_LIBRARIES += common/libcommon.a
common_libcommon_a_SOURCES = \
	common/macro.h \
	common/constants.h \
	common/protocol.h \
	common/util.c common/util.h \
	common/buf.c common/buf.h \
	common/stream-output.c common/stream-output.h \
	common/fileio.c common/fileio.h \
	common/b64.c common/b64.h \
	common/crypto.c common/crypto.h \
	common/rsa.c common/rsa.h \
	common/envelope.c common/envelope.h \
	common/suite2.c common/suite2.h \
	common/rotation.c common/rotation.h \
	common/handshake.c common/handshake.h \
	common/frame.c common/frame.h \
	common/json-util.c common/json-util.h \
	common/sqlite-errno.h \
	common/codec.c common/codec.h \
	common/transport.c common/transport.h \
	common/varlink.c common/varlink.h
common_libcommon_a_CFLAGS = $(AM_CFLAGS) $(NETTLE_CFLAGS) $(HOGWEED_CFLAGS) \
	$(GNUTLS_CFLAGS) $(JSONC_CFLAGS)

# What every program linking libcommon.a needs.
COMMON_LIBS = common/libcommon.a $(HOGWEED_LIBS) $(NETTLE_LIBS) $(GMP_LIBS) \
	$(GNUTLS_LIBS) $(JSONC_LIBS)
