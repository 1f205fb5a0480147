/* SPDX-License-Identifier: MIT */
/*
 * libedit's readline interface, loaded when it is needed: only `scctl
 * connect` on a terminal edits lines. Linked, libedit and the three
 * libraries it pulls in (tinfo, libbsd, libmd) were mapped and relocated
 * by every scctl run: about 0.5 ms, a twentieth of a one-shot send.
 */
#pragma once

#include <editline/readline.h>

extern typeof(rl_callback_handler_install) *sym_rl_callback_handler_install;
extern typeof(rl_callback_handler_remove) *sym_rl_callback_handler_remove;
extern typeof(rl_callback_read_char) *sym_rl_callback_read_char;
extern typeof(rl_forced_update_display) *sym_rl_forced_update_display;
extern typeof(add_history) *sym_add_history;
extern typeof(rl_catch_signals) *sym_rl_catch_signals;

/* Load libedit and its symbols once: 0, or -EOPNOTSUPP with *ret_why
 * (dlerror()'s text) when it is not installed or lacks one of them. */
int line_edit_load(const char **ret_why);
