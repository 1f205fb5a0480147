# SPDX-License-Identifier: MIT
systemdsystemunit_DATA = \
	systemd/securechatd.socket \
	systemd/securechatd-control.socket \
	systemd/securechatd.service
sysusers_DATA = systemd/securechat.conf
EXTRA_DIST += \
	systemd/securechatd.socket \
	systemd/securechatd-control.socket \
	systemd/securechatd.service.in \
	systemd/securechat.sysusers
CLEANFILES += systemd/securechatd.service systemd/securechat.conf

systemd/securechatd.service: systemd/securechatd.service.in Makefile
	$(AM_V_GEN)$(MKDIR_P) systemd && \
	sed -e 's|@sbindir[@]|$(sbindir)|g' -e 's|@sysconfdir[@]|$(sysconfdir)|g' \
		$(srcdir)/systemd/securechatd.service.in >$@
systemd/securechat.conf: systemd/securechat.sysusers
	$(AM_V_GEN)$(MKDIR_P) systemd && cp $(srcdir)/systemd/securechat.sysusers $@
