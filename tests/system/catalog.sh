#!/bin/bash
# SPDX-License-Identifier: MIT
#
# systemd/securechat.catalog and daemon/events.h agree: every MESSAGE_ID of
# the event table has exactly one catalog entry and the catalog explains no
# id the daemon does not send; every entry has a Subject and Defined-By;
# every @FIELD@ it uses is a field the daemon writes; and journalctl can
# compile it (journalctl --root --update-catalog, which needs no root and
# no running systemd). Runs everywhere, unlike the other system tests.

. "$SC_SRCDIR/tests/tap.sh" || exit 99

EVENTS=$SC_SRCDIR/daemon/events.h
LOGC=$SC_SRCDIR/daemon/log.c
CATALOG=$SC_SRCDIR/systemd/securechat.catalog

T=$(mktemp -d "${TMPDIR:-/tmp}/sc-catalog.XXXXXX") || exit 99
trap 'rm -rf "$T"' EXIT

# X(EVENT_KIND, "name", "id", ...) rows of EVENT_TABLE, continuation lines
# joined first: "name id" per line.
sed -e ':a' -e '/\\$/{N;s/\\\n//;ba' -e '}' "$EVENTS" |
	grep -oE 'X\(EVENT_[A-Z_]+, *"[a-z-]+", *"[^"]*"' |
	sed -E 's/^X\(EVENT_[A-Z_]+, *"([a-z-]+)", *"([^"]*)"$/\1 \2/' >"$T/events"
cut -d' ' -f2 "$T/events" | sort >"$T/event-ids"
sed -n 's/^-- \([^ ]*\)[[:space:]]*$/\1/p' "$CATALOG" | sort >"$T/catalog-ids"

n_events=$(wc -l <"$T/events")
ok "events.h has an event table ($n_events events)" test "$n_events" -ge 20
is "every MESSAGE_ID of events.h is 32 lowercase hex digits" "" \
	"$(grep -vxE '[0-9a-f]{32}' "$T/event-ids")"
is "no MESSAGE_ID is used by two events" "" "$(uniq -d "$T/event-ids")"
is "no event name is used twice" "" "$(cut -d' ' -f1 "$T/events" | sort | uniq -d)"
is "no catalog id appears twice" "" "$(uniq -d "$T/catalog-ids")"
is "every event of events.h has a catalog entry" "" \
	"$(comm -23 "$T/event-ids" "$T/catalog-ids" | while read -r id; do grep " $id\$" "$T/events"; done)"
is "the catalog has no entry for an id events.h does not define" "" \
	"$(comm -13 "$T/event-ids" "$T/catalog-ids")"

# Each entry: its header lines up to the first empty line.
awk '/^-- / { id = $2; next } id != "" && /^$/ { id = ""; next }
     id != "" { print id " " $0 }' "$CATALOG" >"$T/headers"
is "every entry has a Subject" "" \
	"$(comm -23 "$T/catalog-ids" <(grep ' Subject: ' "$T/headers" | cut -d' ' -f1 | sort -u))"
is "every entry says Defined-By: SecureChat" "" \
	"$(comm -23 "$T/catalog-ids" <(grep ' Defined-By: SecureChat$' "$T/headers" | cut -d' ' -f1 | sort -u))"

# A misspelt @FIELD@ would print its own name in "journalctl -x".
grep -oE 'ADD_(STR|U64)\("SC_[A-Z_]+"' "$LOGC" | grep -oE 'SC_[A-Z_]+' | sort -u >"$T/fields"
ok "log.c writes SC_* fields ($(wc -l <"$T/fields"))" test "$(wc -l <"$T/fields")" -ge 8
is "every @FIELD@ in the catalog is a field securechatd writes" "" \
	"$(grep -v '^#' "$CATALOG" | grep -oE '@[A-Za-z0-9_]+@' | tr -d @ | sort -u | comm -23 - "$T/fields")"

if command -v journalctl >/dev/null 2>&1; then
	mkdir -p "$T/root/usr/lib/systemd/catalog"
	cp "$CATALOG" "$T/root/usr/lib/systemd/catalog/"
	ok "journalctl --update-catalog compiles it" journalctl --root="$T/root" --update-catalog
	journalctl --root="$T/root" --list-catalog >"$T/list" 2>"$T/list.err"
	is "journalctl --list-catalog lists every event, nothing else" "" \
		"$(cut -d' ' -f1 "$T/list" | sort | diff "$T/event-ids" - ; cat "$T/list.err")"
	like "...with its subject" '^31358afcfee74cf8aa31d13ba980d01f SecureChat: SecureChat relay started$' \
		"$(cat "$T/list")"
else
	echo "ok $((tap_n + 1)) # SKIP journalctl is not installed"
	tap_n=$((tap_n + 1))
fi

done_testing
