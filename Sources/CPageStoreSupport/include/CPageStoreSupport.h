#ifndef CPAGESTORE_SUPPORT_H
#define CPAGESTORE_SUPPORT_H
// What Swift cannot import from <fcntl.h> and <liburing.h> on its own: macros built
// from other macros (the IOSQE_* flags), the per-architecture O_DIRECT value, statx's
// direct-I/O alignment fields, fallocate(2) (declared only under _GNU_SOURCE), and a
// loop that copies a batch of CQEs out of the ring.
// Nothing here re-implements liburing.

#include <sys/types.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <liburing.h>

#ifdef __cplusplus
extern "C" {
#endif

/// The O_DIRECT open flag of the architecture this was compiled for.
int ps_o_direct(void);

/// fallocate(2), mode 0 (glibc declares it only under _GNU_SOURCE): 0, or -1 and errno.
int ps_fallocate(int fd, int64_t offset, int64_t length);

enum {
    PS_IOSQE_FIXED_FILE = IOSQE_FIXED_FILE,
    PS_IOSQE_IO_LINK = IOSQE_IO_LINK,
    PS_IOSQE_IO_DRAIN = IOSQE_IO_DRAIN,
};

enum {
    PS_SETUP_COOP_TASKRUN = IORING_SETUP_COOP_TASKRUN,
    PS_SETUP_SINGLE_ISSUER = IORING_SETUP_SINGLE_ISSUER,
    PS_SETUP_DEFER_TASKRUN = IORING_SETUP_DEFER_TASKRUN,
    PS_SETUP_SUBMIT_ALL = IORING_SETUP_SUBMIT_ALL,
    PS_SETUP_SQPOLL = IORING_SETUP_SQPOLL,
    PS_SETUP_SQ_AFF = IORING_SETUP_SQ_AFF,
    PS_SETUP_IOPOLL = IORING_SETUP_IOPOLL,
    PS_FSYNC_DATASYNC = IORING_FSYNC_DATASYNC,
    PS_FEAT_NODROP = IORING_FEAT_NODROP,
};

/// One completion, copied out of the CQ ring.
typedef struct ps_completion {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
} ps_completion;

/// Copies up to `max` ready completions into `out` and advances the CQ past them.
/// Returns the number copied (0 when none are ready). Never enters the kernel.
unsigned ps_peek_completions(struct io_uring *ring, ps_completion *out, unsigned max);

/// Direct-I/O alignment of an open file from statx(STATX_DIOALIGN).
/// Returns 0 and sets both values when the file system reports them; otherwise an errno
/// (EOPNOTSUPP when the kernel or file system does not report them).
int ps_dio_alignment(int fd, uint32_t *mem_align, uint32_t *offset_align);

/// Asks the CPU to bring the cache line holding `address` in (a hint, never a fault):
/// a seek touches a block of every level, and starting the next level's memory loads
/// before searching this one lets their cache misses overlap.
static inline void ps_prefetch(const void *address) { __builtin_prefetch(address, 0, 3); }

#ifdef __cplusplus
}
#endif
#endif
