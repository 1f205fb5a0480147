/* SPDX-License-Identifier: MIT */
/* scctl: the command line is verbs.c's, where the tests can call it. */
#include <signal.h>

#include "verbs.h"

int main(int argc, char *argv[]) {
        /* A relay that goes away must be an error we report, not a signal. */
        signal(SIGPIPE, SIG_IGN);
        return scctl_main(argc, argv);
}
