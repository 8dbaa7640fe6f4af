#ifndef TOLLGATE_CSYSTEMD_SHIM_H
#define TOLLGATE_CSYSTEMD_SHIM_H
// libsystemd from Debian's libsystemd-dev: readiness notification, socket activation, the journal.
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
#include <sys/uio.h>
#endif
