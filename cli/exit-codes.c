/* SPDX-License-Identifier: MIT */
#include "exit-codes.h"
#include "macro.h"

static const int status_errno[] = {
        [EXIT_OK] = 0,
        [EXIT_FAIL] = -EIO,
        [EXIT_USAGE] = -EINVAL,
        [EXIT_CONNECT] = -ENOTCONN,
        [EXIT_AUTH] = -EKEYREJECTED,
        [EXIT_SERVER_KEY] = -EBADE,
        [EXIT_PEER_KEY] = -ENOKEY,
        [EXIT_REFUSED] = -EREMOTEIO,
        [EXIT_TIMEOUT] = -ETIMEDOUT,
        [EXIT_PERMISSION] = -EACCES,
        [EXIT_RATE_LIMITED] = -EBUSY,
};
_Static_assert(ELEMENTSOF(status_errno) == _EXIT_MAX + 1, "every exit status needs its errno");

int exit_status_to_errno(int status) {
        if (status < 0 || (size_t) status >= ELEMENTSOF(status_errno))
                return -EIO;
        return status_errno[status];
}

int exit_status_from_errno(int r) {
        if (r >= 0)
                return EXIT_OK;
        for (size_t i = EXIT_FAIL; i < ELEMENTSOF(status_errno); i++)
                if (status_errno[i] == r)
                        return (int) i;
        return EXIT_FAIL;
}
