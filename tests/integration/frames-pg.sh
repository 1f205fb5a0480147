#!/bin/bash
# SPDX-License-Identifier: MIT
# frames.sh once more, against a relay whose database is PostgreSQL (tests/pg.sh).
SC_DATABASE=pg exec "${SC_SRCDIR:?run this from make check}/tests/integration/frames.sh"
