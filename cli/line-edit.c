/* SPDX-License-Identifier: MIT */
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>

#include "line-edit.h"
#include "macro.h"

/* The soname Debian's libedit2 ships (libedit's ABI since 2009). */
#define LIBEDIT_SONAME "libedit.so.2"

typeof(rl_callback_handler_install) *sym_rl_callback_handler_install;
typeof(rl_callback_handler_remove) *sym_rl_callback_handler_remove;
typeof(rl_callback_read_char) *sym_rl_callback_read_char;
typeof(rl_forced_update_display) *sym_rl_forced_update_display;
typeof(add_history) *sym_add_history;
typeof(rl_catch_signals) *sym_rl_catch_signals;

int line_edit_load(const char **ret_why) {
        static const struct {
                const char *name;
                void **sym;
        } table[] = {
                { "rl_callback_handler_install", (void **) &sym_rl_callback_handler_install },
                { "rl_callback_handler_remove", (void **) &sym_rl_callback_handler_remove },
                { "rl_callback_read_char", (void **) &sym_rl_callback_read_char },
                { "rl_forced_update_display", (void **) &sym_rl_forced_update_display },
                { "add_history", (void **) &sym_add_history },
                { "rl_catch_signals", (void **) &sym_rl_catch_signals },
        };
        static char why[256];
        static void *dl;
        void *handle;
        size_t i = 0;

        if (dl)
                return 0;
        /* Never closed: the process keeps it until it exits. */
        handle = dlopen(LIBEDIT_SONAME, RTLD_NOW | RTLD_NODELETE);
        while (handle && i < ELEMENTSOF(table) && (*table[i].sym = dlsym(handle, table[i].name)))
                i++;
        if (i < ELEMENTSOF(table)) {
                /* Copied before dlclose(), which clears it. */
                snprintf(why, sizeof(why), "%s", dlerror());
                if (handle)
                        dlclose(handle);
                *ret_why = why;
                return -EOPNOTSUPP;
        }
        dl = handle;
        return 0;
}
