#!/bin/bash
# SPDX-License-Identifier: MIT
# close.sh once more, against a relay with tls=no and clients with --no-tls.
SC_TLS=no exec "${SC_SRCDIR:?run this from make check}/tests/integration/close.sh"
