# SPDX-License-Identifier: MIT
#
# How securechatd fits into a systemd system: the socket and service units,
# the admin group (sysusers.d), the journal catalog of its audit events,
# and scctl's bash completion. The directories come from configure
# (pkg-config systemd, --with-systemdsystemunitdir= and friends); "make
# distcheck" keeps them inside its prefix (AM_DISTCHECK_CONFIGURE_FLAGS).
#
# Installing does not run anything: packages (debian/) or the administrator
# run "systemd-sysusers" (the securechat group must exist before
# securechatd-control.socket starts), "journalctl --update-catalog",
# "systemctl daemon-reload" and enable both sockets: README.md and
# securechatd(8), "Install as a service".

systemdsystemunit_DATA = \
	systemd/securechatd.socket \
	systemd/securechatd-control.socket \
	systemd/securechatd.service
sysusers_DATA = systemd/securechat.conf
dist_catalog_DATA = systemd/securechat.catalog
bashcompletion_DATA = completion/scctl
EXTRA_DIST += \
	systemd/securechatd.socket \
	systemd/securechatd-control.socket \
	systemd/securechatd.service.in \
	systemd/securechat.sysusers \
	completion/scctl.bash
CLEANFILES += systemd/securechatd.service systemd/securechat.conf completion/scctl

systemd/securechatd.service: systemd/securechatd.service.in Makefile
	$(AM_V_GEN)$(MKDIR_P) systemd && \
	sed -e 's|@sbindir[@]|$(sbindir)|g' -e 's|@sysconfdir[@]|$(sysconfdir)|g' \
		$(srcdir)/systemd/securechatd.service.in >$@
# Installed under the names systemd-sysusers and bash-completion look for.
systemd/securechat.conf: systemd/securechat.sysusers
	$(AM_V_GEN)$(MKDIR_P) systemd && cp $(srcdir)/systemd/securechat.sysusers $@
completion/scctl: completion/scctl.bash
	$(AM_V_GEN)$(MKDIR_P) completion && cp $(srcdir)/completion/scctl.bash $@
