# SPDX-License-Identifier: MIT
#
# libFuzzer targets over the parsers a peer reaches. Build them with clang:
#   CC=clang ./configure --enable-fuzzing \
#       CFLAGS="-g -O1 -fsanitize=fuzzer-no-link,address,undefined"
# Only the fuzz programs get -fsanitize=fuzzer (libFuzzer's main); the
# library is built with the CFLAGS above. fuzz/run-fuzzers.sh runs them.
EXTRA_DIST += fuzz/run-fuzzers.sh fuzz/corpus

if ENABLE_FUZZING
FUZZ_TARGETS = fuzz/fuzz-frame fuzz/fuzz-codec fuzz/fuzz-envelope fuzz/fuzz-config \
	fuzz/fuzz-suite2
noinst_PROGRAMS += $(FUZZ_TARGETS)
FUZZ_CFLAGS = $(AM_CFLAGS) -fsanitize=fuzzer $(NETTLE_CFLAGS) $(HOGWEED_CFLAGS) \
	$(GNUTLS_CFLAGS) $(JSONC_CFLAGS)
FUZZ_LINKFLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer

fuzz_fuzz_frame_SOURCES = fuzz/fuzz-frame.c
fuzz_fuzz_frame_CFLAGS = $(FUZZ_CFLAGS)
fuzz_fuzz_frame_LDFLAGS = $(FUZZ_LINKFLAGS)
fuzz_fuzz_frame_LDADD = $(COMMON_LIBS)

fuzz_fuzz_codec_SOURCES = fuzz/fuzz-codec.c
fuzz_fuzz_codec_CFLAGS = $(FUZZ_CFLAGS)
fuzz_fuzz_codec_LDFLAGS = $(FUZZ_LINKFLAGS)
fuzz_fuzz_codec_LDADD = $(COMMON_LIBS)

fuzz_fuzz_envelope_SOURCES = fuzz/fuzz-envelope.c
fuzz_fuzz_envelope_CFLAGS = $(FUZZ_CFLAGS)
fuzz_fuzz_envelope_LDFLAGS = $(FUZZ_LINKFLAGS)
fuzz_fuzz_envelope_LDADD = $(COMMON_LIBS)

# Suite 2's binary parsers: header, prekey bundle, signed prekey, state.
fuzz_fuzz_suite2_SOURCES = fuzz/fuzz-suite2.c
fuzz_fuzz_suite2_CFLAGS = $(FUZZ_CFLAGS)
fuzz_fuzz_suite2_LDFLAGS = $(FUZZ_LINKFLAGS)
fuzz_fuzz_suite2_LDADD = $(COMMON_LIBS)

# The daemon's configuration parser, from its convenience library.
fuzz_fuzz_config_SOURCES = fuzz/fuzz-config.c
fuzz_fuzz_config_CFLAGS = $(DAEMON_CFLAGS) -fsanitize=fuzzer -I$(top_srcdir)/daemon
fuzz_fuzz_config_LDFLAGS = $(FUZZ_LINKFLAGS)
fuzz_fuzz_config_LDADD = $(DAEMON_LIBS)

# "make fuzz-targets" builds the fuzzers alone (CI).
fuzz-targets: $(FUZZ_TARGETS)
.PHONY: fuzz-targets
endif
