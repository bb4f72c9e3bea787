#include "storage/reader.h"

#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"

/* Entries of each thread's ring: a batch bigger than this is submitted in
 * several rounds. */
#define RING_DEPTH 128

enum { URING_UNKNOWN, URING_WORKS, URING_UNAVAILABLE };

static atomic_int uring_state = URING_UNKNOWN;
static atomic_int injected_failures;
static pthread_key_t ring_key;
static pthread_once_t ring_once = PTHREAD_ONCE_INIT;

void st_read_inject_failures(int n) { atomic_store(&injected_failures, n); }

static int injected_failure(void)
{
    int n = atomic_load(&injected_failures);
    while (n > 0 && !atomic_compare_exchange_weak(&injected_failures, &n,
                                                  n - 1))
        ;
    return n > 0;
}

static void ring_free(void *arg)
{
    struct io_uring *ring = arg;
    io_uring_queue_exit(ring);
    qv_mem_free(ring);
}

static void ring_key_create(void)
{
    pthread_key_create(&ring_key, ring_free);
}

/* This thread's ring, created on first use; NULL when io_uring cannot be
 * had (then every later call takes the pread path at once). */
static struct io_uring *thread_ring(void)
{
    if (atomic_load(&uring_state) == URING_UNAVAILABLE)
        return NULL;
    pthread_once(&ring_once, ring_key_create);
    struct io_uring *ring = pthread_getspecific(ring_key);
    if (ring)
        return ring;
    ring = qv_malloc(sizeof *ring);
    if (!ring)
        return NULL;   /* out of memory: this batch reads with pread */
    int rc = io_uring_queue_init(RING_DEPTH, ring, 0);
    if (rc < 0) {
        qv_mem_free(ring);
        if (rc != -ENOMEM &&
            atomic_exchange(&uring_state, URING_UNAVAILABLE) !=
                URING_UNAVAILABLE)
            fprintf(stderr, "quiver: io_uring is unavailable (%s); full "
                    "vectors are read with pread\n", strerror(-rc));
        return NULL;
    }
    pthread_setspecific(ring_key, ring);
    atomic_store(&uring_state, URING_WORKS);
    return ring;
}

const char *st_io_name(void)
{
    switch (atomic_load(&uring_state)) {
    case URING_WORKS:
        return "io_uring";
    case URING_UNAVAILABLE:
        return "pread";
    default:
        return "unused";
    }
}

/* Read [done, len) of one request with pread. */
static int read_rest(int fd, const st_read *r, size_t done)
{
    while (done < r->len) {
        if (injected_failure())
            return EIO;
        ssize_t got = pread(fd, (char *)r->buf + done, r->len - done,
                            (off_t)(r->offset + done));
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return errno;
        if (got == 0)
            return EIO;  /* past the end of the file */
        done += (size_t)got;
    }
    return 0;
}

/* One round of at most RING_DEPTH reads: submit them all, then gather
 * every completion (all of them, even after an error, so none is left in
 * the ring for the next batch). */
static int uring_round(struct io_uring *ring, int fd, st_read *reqs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
        io_uring_prep_read(sqe, fd, reqs[i].buf, (unsigned)reqs[i].len,
                           reqs[i].offset);
        io_uring_sqe_set_data64(sqe, i);
    }
    int rc = io_uring_submit_and_wait(ring, (unsigned)n);
    if (rc < 0)
        return -rc;
    int err = 0;
    for (size_t seen = 0; seen < n; seen++) {
        struct io_uring_cqe *cqe;
        rc = io_uring_wait_cqe(ring, &cqe);
        if (rc < 0)
            return -rc;
        size_t i = (size_t)io_uring_cqe_get_data64(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(ring, cqe);
        if (err)
            continue;
        if (injected_failure())
            err = EIO;
        else if (res < 0)
            err = -res;
        else if ((size_t)res < reqs[i].len)   /* a short read: finish it */
            err = read_rest(fd, &reqs[i], (size_t)res);
    }
    return err;
}

int st_read_batch(st_env *env, st_read *reqs, size_t n, int use_uring)
{
    int fd;
    if (mdb_env_get_fd(st_mdb(env), &fd) != 0)
        return EBADF;
    struct io_uring *ring = use_uring ? thread_ring() : NULL;
    int err = 0;
    for (size_t i = 0; i < n && !err; i += RING_DEPTH) {
        size_t m = n - i < RING_DEPTH ? n - i : RING_DEPTH;
        if (ring) {
            err = uring_round(ring, fd, reqs + i, m);
        } else {
            for (size_t j = 0; j < m && !err; j++)
                err = read_rest(fd, &reqs[i + j], 0);
        }
    }
    return err;
}
