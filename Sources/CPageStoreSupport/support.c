#define _GNU_SOURCE
#include "CPageStoreSupport.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/stat.h>

int ps_o_direct(void) { return O_DIRECT; }

int ps_fallocate(int fd, int64_t offset, int64_t length) { return fallocate(fd, 0, (off_t)offset, (off_t)length); }

unsigned ps_peek_completions(struct io_uring *ring, ps_completion *out, unsigned max) {
    struct io_uring_cqe *cqes[64];
    unsigned total = 0;
    while (total < max) {
        unsigned want = max - total;
        if (want > 64) want = 64;
        unsigned n = io_uring_peek_batch_cqe(ring, cqes, want);
        if (n == 0) break;
        for (unsigned i = 0; i < n; i++) {
            out[total + i].user_data = cqes[i]->user_data;
            out[total + i].res = cqes[i]->res;
            out[total + i].flags = cqes[i]->flags;
        }
        io_uring_cq_advance(ring, n);
        total += n;
    }
    return total;
}

int ps_dio_alignment(int fd, uint32_t *mem_align, uint32_t *offset_align) {
#ifdef STATX_DIOALIGN
    struct statx stx;
    memset(&stx, 0, sizeof stx);
    if (syscall(SYS_statx, fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) != 0) return errno;
    if (!(stx.stx_mask & STATX_DIOALIGN) || stx.stx_dio_offset_align == 0) return EOPNOTSUPP;
    *mem_align = stx.stx_dio_mem_align;
    *offset_align = stx.stx_dio_offset_align;
    return 0;
#else
    (void)fd; (void)mem_align; (void)offset_align;
    return EOPNOTSUPP;
#endif
}
