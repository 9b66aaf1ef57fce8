#ifndef CLIBURING_SHIM_H
#define CLIBURING_SHIM_H
// <sys/types.h> first: without it Glibc and this module disagree on fd_set.
#include <sys/types.h>
#include <liburing.h>
#endif
