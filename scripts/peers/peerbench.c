/* peerbench: kvctl bench's workloads on LevelDB, RocksDB or LMDB, through their C
 * libraries, printing kvctl bench's (db_bench's) report lines, so that
 * scripts/compare-peers.sh can put the four engines side by side.
 *
 * Build (Debian: libleveldb-dev librocksdb-dev liblmdb-dev; no warnings with -Wall -Wextra):
 *   cc -O2 -o peerbench scripts/peers/peerbench.c -lleveldb -lrocksdb -llmdb -lpthread
 * Run:
 *   peerbench --engine=leveldb|rocksdb|lmdb --db=DIR
 *             --benchmarks=fillseq,fillrandom,overwrite,fillsync,readrandom,readseq,seekrandom
 *             --num=N --reads=R --writes=W --value_size=100 --key_size=16 --threads=T --seed=S
 *
 * Semantics are kvctl bench's (Sources/kvctl/Bench.swift):
 * - A key is its index as zero-padded decimal of --key_size bytes (the last key_size digits
 *   if longer); a value is --value_size random bytes, drawn anew for every put.
 * - Random streams are SplitMix64, seeded as kvctl seeds them (--seed, FNV-1a of the
 *   benchmark's name, its place in --benchmarks, the thread): every benchmark and every
 *   thread draws its own keys, uniform in [0, num). The bytes are not kvctl's stream.
 * - fill* benchmarks close the database, remove its directory and open it anew; the other
 *   benchmarks use the database that is open (opened once, when the first needs it).
 * - fillseq puts keys 0..num-1 in order; fillrandom and overwrite put num random keys;
 *   fillsync puts --writes (default num/1000, at least 1) random keys, each durable. Every
 *   write is one put (no batches); all but fillsync's are not synced.
 * - readrandom: --reads (default num) point gets of random keys, counting those found;
 *   readseq: one forward walk from the first key, at most --reads entries (num when unset);
 *   seekrandom: --reads seeks to random keys, each positioning one entry, found when its
 *   key is the target. Each seek opens a fresh iterator (LMDB: renews its cursor), as
 *   LevelDB's db_bench and kvctl bench do.
 * - --num, --reads and --writes count per thread; --threads runs T pthreads at once.
 * - Report line: name, micros/op (the threads' seconds added up * 1e6 / operations),
 *   ops/sec (operations / elapsed), seconds elapsed, operations, MB/s of key+value bytes,
 *   and "(F of R found)" for readrandom and seekrandom.
 *
 * Engine settings: each library's defaults, but for no compression, create_if_missing
 * and what an engine needs to run at all. No cache, filter or tuning is added.
 * - LevelDB 1.23 (leveldb_options_create = leveldb::Options()): 4 MiB write buffer,
 *   8 MiB internal block cache (block_cache NULL), no bloom filter, 4 KiB blocks, 2 MiB
 *   tables, max_open_files 1000, reads through the kernel's page cache. WAL on, writes
 *   not synced but for fillsync (WriteOptions.sync).
 * - RocksDB 7.8 (rocksdb_options_create = rocksdb::Options()): 64 MiB write buffer, at
 *   most 2 of them; block-based tables with their default options: 8 MiB internal LRU
 *   block cache, no filter policy, 4 KiB blocks, index and filter blocks outside the
 *   cache, format_version 5; level compaction with L0 trigger 4, 64 MiB target file
 *   size, 256 MiB level base, level_compaction_dynamic_level_bytes false; max_open_files
 *   -1; 2 background jobs; buffered (page cache) reads. WAL on, writes as LevelDB's.
 *   (rocksdb_options_set_compression sets `compression` only; compression_per_level is
 *   empty and bottommost_compression disabled by default, so no level compresses.)
 * - LMDB 0.9: one environment, a B+tree in one memory map read through the page cache;
 *   map size 64 GiB (sparse: the file grows as pages are written; 10M keys of 100-byte
 *   values take a few GiB), default flags otherwise (readahead on, no MDB_WRITEMAP).
 *   A fill other than fillsync, and overwrite, run with MDB_NOSYNC (a commit reaches the
 *   page cache, not the disk: the analogue of a non-sync put in the others); fillsync
 *   without it (every commit durable, data and meta page). One write transaction per
 *   put. maxreaders stays at LMDB's 126 unless --threads needs more. A database opened
 *   first by a read benchmark gets the default flags (0).
 *   Reads: each thread keeps one read-only (MDB_RDONLY) transaction and one cursor; every
 *   point get and every seek is a transaction of its own, mdb_txn_renew (and
 *   mdb_cursor_renew) before it and mdb_txn_reset after, as Symas's own db_bench_mdb
 *   (doc/bench/db_bench_mdb.cc in hyc/leveldb) does in ReadRandom; an older copy of that
 *   file ran all of ReadRandom in one transaction, which would let LMDB skip the reader
 *   slot update per read that the others' per-read snapshot costs. readseq walks in one
 *   transaction, as db_bench_mdb's ReadSequential. A get copies the value out of the map
 *   (the others' gets return copies too).
 *
 * Any failure prints what failed and exits 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <leveldb/c.h>
#include <lmdb.h>
#include <rocksdb/c.h>

enum engine_kind { LEVELDB, ROCKSDB, LMDB };
enum workload { FILLSEQ, FILLRANDOM, OVERWRITE, FILLSYNC, READRANDOM, READSEQ, SEEKRANDOM };
static const char *const workload_names[] = {"fillseq", "fillrandom", "overwrite", "fillsync",
                                             "readrandom", "readseq", "seekrandom"};

static struct {
    enum engine_kind engine;
    const char *db;
    char benchmarks[4096];
    long num, reads, writes, value_size, key_size, threads;
    uint64_t seed;
} flags = {LEVELDB, "/tmp/peerbench", "fillrandom,readrandom,seekrandom,readseq", 1000000, -1, -1, 100, 16, 1, 301};

static void die(const char *what, const char *why) {
    fprintf(stderr, "peerbench: %s: %s\n", what, why ? why : "failed");
    exit(1);
}

static void *checked_malloc(size_t size) {
    void *pointer = malloc(size ? size : 1);
    if (!pointer) die("malloc", strerror(errno));
    return pointer;
}

/* ---- the engines behind one interface ---- */

static leveldb_t *ldb;
static leveldb_options_t *lopts;
static leveldb_writeoptions_t *lwrite, *lwrite_sync;
static leveldb_readoptions_t *lread;
static rocksdb_t *rdb;
static rocksdb_options_t *ropts;
static rocksdb_writeoptions_t *rwrite, *rwrite_sync;
static rocksdb_readoptions_t *rread;
static MDB_env *env;
static MDB_dbi dbi;

static void engine_close(void) {
    if (ldb) { leveldb_close(ldb); ldb = NULL; }
    if (rdb) { rocksdb_close(rdb); rdb = NULL; }
    if (env) { mdb_env_close(env); env = NULL; }
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)st; (void)type; (void)ftw;
    if (remove(path) && errno != ENOENT) die(path, strerror(errno));
    return 0;
}

static void remove_database(void) {
    struct stat st;
    if (lstat(flags.db, &st) && errno == ENOENT) return;
    if (nftw(flags.db, remove_entry, 16, FTW_DEPTH | FTW_PHYS) && errno != ENOENT) die(flags.db, strerror(errno));
}

/* mkdir -p: LevelDB and RocksDB create the last component only, LMDB none. */
static void make_directories(const char *path) {
    char buffer[PATH_MAX];
    if (snprintf(buffer, sizeof buffer, "%s", path) >= (int)sizeof buffer) die(path, "path too long");
    for (char *p = buffer + 1; ; p++) {
        if (*p != '/' && *p != '\0') continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(buffer, 0755) && errno != EEXIST) die(buffer, strerror(errno));
        *p = saved;
        if (!saved) break;
    }
}

/* Opens the database unless open. LMDB: `nosync` sets MDB_NOSYNC on a new environment,
 * or on an open one that a writer needs without it (overwrite after fillsync). */
static void engine_open(int nosync) {
    char *err = NULL;
    switch (flags.engine) {
    case LEVELDB:
        if (ldb) return;
        if (!lopts) {
            lopts = leveldb_options_create();
            leveldb_options_set_create_if_missing(lopts, 1);
            leveldb_options_set_compression(lopts, leveldb_no_compression);
            lwrite = leveldb_writeoptions_create();
            lwrite_sync = leveldb_writeoptions_create();
            leveldb_writeoptions_set_sync(lwrite_sync, 1);
            lread = leveldb_readoptions_create();
        }
        make_directories(flags.db);
        ldb = leveldb_open(lopts, flags.db, &err);
        if (err) die("leveldb_open", err);
        break;
    case ROCKSDB:
        if (rdb) return;
        if (!ropts) {
            ropts = rocksdb_options_create();
            rocksdb_options_set_create_if_missing(ropts, 1);
            rocksdb_options_set_compression(ropts, rocksdb_no_compression);
            rwrite = rocksdb_writeoptions_create();
            rwrite_sync = rocksdb_writeoptions_create();
            rocksdb_writeoptions_set_sync(rwrite_sync, 1);
            rread = rocksdb_readoptions_create();
        }
        make_directories(flags.db);
        rdb = rocksdb_open(ropts, flags.db, &err);
        if (err) die("rocksdb_open", err);
        break;
    case LMDB: {
        int rc;
        if (env) {
            unsigned int current;
            if ((rc = mdb_env_get_flags(env, &current))) die("mdb_env_get_flags", mdb_strerror(rc));
            if (nosync && !(current & MDB_NOSYNC) && (rc = mdb_env_set_flags(env, MDB_NOSYNC, 1)))
                die("mdb_env_set_flags", mdb_strerror(rc));
            return;
        }
        make_directories(flags.db);
        if ((rc = mdb_env_create(&env))) die("mdb_env_create", mdb_strerror(rc));
        if ((rc = mdb_env_set_mapsize(env, (size_t)64 << 30))) die("mdb_env_set_mapsize", mdb_strerror(rc));
        if (flags.threads + 2 > 126 && (rc = mdb_env_set_maxreaders(env, (unsigned int)flags.threads + 2)))
            die("mdb_env_set_maxreaders", mdb_strerror(rc));
        if ((rc = mdb_env_open(env, flags.db, nosync ? MDB_NOSYNC : 0, 0644))) die("mdb_env_open", mdb_strerror(rc));
        MDB_txn *txn;
        if ((rc = mdb_txn_begin(env, NULL, 0, &txn))) die("mdb_txn_begin", mdb_strerror(rc));
        if ((rc = mdb_dbi_open(txn, NULL, 0, &dbi))) die("mdb_dbi_open", mdb_strerror(rc));
        if ((rc = mdb_txn_commit(txn))) die("mdb_txn_commit", mdb_strerror(rc));
        break;
    }
    }
}

static void engine_put(const char *key, size_t klen, const char *value, size_t vlen, int sync) {
    char *err = NULL;
    switch (flags.engine) {
    case LEVELDB:
        leveldb_put(ldb, sync ? lwrite_sync : lwrite, key, klen, value, vlen, &err);
        if (err) die("leveldb_put", err);
        break;
    case ROCKSDB:
        rocksdb_put(rdb, sync ? rwrite_sync : rwrite, key, klen, value, vlen, &err);
        if (err) die("rocksdb_put", err);
        break;
    case LMDB: {
        MDB_txn *txn;
        MDB_val k = {klen, (void *)key}, v = {vlen, (void *)value};
        int rc = mdb_txn_begin(env, NULL, 0, &txn);
        if (rc) die("mdb_txn_begin", mdb_strerror(rc));
        if ((rc = mdb_put(txn, dbi, &k, &v, 0))) {
            mdb_txn_abort(txn);
            die("mdb_put", mdb_strerror(rc));
        }
        if ((rc = mdb_txn_commit(txn))) die("mdb_txn_commit", mdb_strerror(rc));
        break;
    }
    }
}

/* Per-thread read state: LMDB's read-only transaction and cursor, a buffer for values. */
struct reader {
    MDB_txn *txn;
    MDB_cursor *cursor;
    char *value;
    size_t capacity;
};

static void reader_begin(struct reader *r) {
    int renew = r->txn != NULL;
    int rc = renew ? mdb_txn_renew(r->txn) : mdb_txn_begin(env, NULL, MDB_RDONLY, &r->txn);
    if (rc) die(renew ? "mdb_txn_renew" : "mdb_txn_begin(MDB_RDONLY)", mdb_strerror(rc));
    rc = renew ? mdb_cursor_renew(r->txn, r->cursor) : mdb_cursor_open(r->txn, dbi, &r->cursor);
    if (rc) die(renew ? "mdb_cursor_renew" : "mdb_cursor_open", mdb_strerror(rc));
}

static void reader_end(struct reader *r) { mdb_txn_reset(r->txn); }

static void reader_free(struct reader *r) {
    if (r->cursor) mdb_cursor_close(r->cursor);
    if (r->txn) mdb_txn_abort(r->txn);
    free(r->value);
}

/* Point read: the value's length, or -1 when absent. */
static long engine_get(struct reader *r, const char *key, size_t klen) {
    char *err = NULL;
    size_t vlen = 0;
    switch (flags.engine) {
    case LEVELDB: {
        char *value = leveldb_get(ldb, lread, key, klen, &vlen, &err);
        if (err) die("leveldb_get", err);
        if (!value) return -1;
        leveldb_free(value);
        return (long)vlen;
    }
    case ROCKSDB: {
        char *value = rocksdb_get(rdb, rread, key, klen, &vlen, &err);
        if (err) die("rocksdb_get", err);
        if (!value) return -1;
        rocksdb_free(value);
        return (long)vlen;
    }
    case LMDB: {
        reader_begin(r);
        MDB_val k = {klen, (void *)key}, v;
        int rc = mdb_get(r->txn, dbi, &k, &v);
        long found = -1;
        if (rc == 0) {
            if (v.mv_size > r->capacity) {
                free(r->value);
                r->capacity = v.mv_size;
                r->value = checked_malloc(r->capacity);
            }
            memcpy(r->value, v.mv_data, v.mv_size);
            found = (long)v.mv_size;
        } else if (rc != MDB_NOTFOUND) die("mdb_get", mdb_strerror(rc));
        reader_end(r);
        return found;
    }
    }
    return -1;
}

/* Seek with a fresh iterator: 1 when the first entry at or after `key` is `key`. */
static int engine_seek(struct reader *r, const char *key, size_t klen) {
    const char *got;
    size_t glen = 0;
    int equal = 0;
    char *err = NULL;
    switch (flags.engine) {
    case LEVELDB: {
        leveldb_iterator_t *it = leveldb_create_iterator(ldb, lread);
        leveldb_iter_seek(it, key, klen);
        if (leveldb_iter_valid(it)) {
            got = leveldb_iter_key(it, &glen);
            equal = glen == klen && memcmp(got, key, klen) == 0;
        } else {
            leveldb_iter_get_error(it, &err);
            if (err) die("leveldb_iter_seek", err);
        }
        leveldb_iter_destroy(it);
        break;
    }
    case ROCKSDB: {
        rocksdb_iterator_t *it = rocksdb_create_iterator(rdb, rread);
        rocksdb_iter_seek(it, key, klen);
        if (rocksdb_iter_valid(it)) {
            got = rocksdb_iter_key(it, &glen);
            equal = glen == klen && memcmp(got, key, klen) == 0;
        } else {
            rocksdb_iter_get_error(it, &err);
            if (err) die("rocksdb_iter_seek", err);
        }
        rocksdb_iter_destroy(it);
        break;
    }
    case LMDB: {
        reader_begin(r);
        MDB_val k = {klen, (void *)key}, v;
        int rc = mdb_cursor_get(r->cursor, &k, &v, MDB_SET_RANGE);
        if (rc == 0) equal = k.mv_size == klen && memcmp(k.mv_data, key, klen) == 0;
        else if (rc != MDB_NOTFOUND) die("mdb_cursor_get(MDB_SET_RANGE)", mdb_strerror(rc));
        reader_end(r);
        break;
    }
    }
    return equal;
}

/* Walks from the first entry, at most `limit` entries: the count; adds the bytes. */
static long engine_scan(struct reader *r, long limit, long *bytes) {
    long count = 0;
    size_t klen, vlen;
    char *err = NULL;
    switch (flags.engine) {
    case LEVELDB: {
        leveldb_iterator_t *it = leveldb_create_iterator(ldb, lread);
        for (leveldb_iter_seek_to_first(it); count < limit && leveldb_iter_valid(it); leveldb_iter_next(it)) {
            leveldb_iter_key(it, &klen);
            leveldb_iter_value(it, &vlen);
            *bytes += (long)(klen + vlen);
            count++;
        }
        leveldb_iter_get_error(it, &err);
        if (err) die("leveldb_iter_next", err);
        leveldb_iter_destroy(it);
        break;
    }
    case ROCKSDB: {
        rocksdb_iterator_t *it = rocksdb_create_iterator(rdb, rread);
        for (rocksdb_iter_seek_to_first(it); count < limit && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
            rocksdb_iter_key(it, &klen);
            rocksdb_iter_value(it, &vlen);
            *bytes += (long)(klen + vlen);
            count++;
        }
        rocksdb_iter_get_error(it, &err);
        if (err) die("rocksdb_iter_next", err);
        rocksdb_iter_destroy(it);
        break;
    }
    case LMDB: {
        reader_begin(r);
        MDB_val k, v;
        int rc = count < limit ? mdb_cursor_get(r->cursor, &k, &v, MDB_FIRST) : MDB_NOTFOUND;
        while (rc == 0) {
            *bytes += (long)(k.mv_size + v.mv_size);
            if (++count >= limit) break;
            rc = mdb_cursor_get(r->cursor, &k, &v, MDB_NEXT);
        }
        if (rc && rc != MDB_NOTFOUND) die("mdb_cursor_get(MDB_NEXT)", mdb_strerror(rc));
        reader_end(r);
        break;
    }
    }
    return count;
}

/* The loaded librocksdb's real file name, e.g. librocksdb.so.7.8.3: its C API has no
 * version call and rocksdb/version.h is C++. */
static int find_rocksdb(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    const char *name = info->dlpi_name ? strstr(info->dlpi_name, "librocksdb.so") : NULL;
    if (!name) return 0;
    char *real = realpath(info->dlpi_name, NULL);
    const char *base = real ? strrchr(real, '/') : NULL;
    const char *so = strstr(base ? base : name, ".so.");
    snprintf(data, 64, "RocksDB %s", so ? so + 4 : "(version unknown)");
    free(real);
    return 1;
}

static const char *engine_version(void) {
    static char text[64];
    switch (flags.engine) {
    case LEVELDB: snprintf(text, sizeof text, "LevelDB %d.%d", leveldb_major_version(), leveldb_minor_version()); break;
    case ROCKSDB:
        snprintf(text, sizeof text, "RocksDB (version unknown)");
        dl_iterate_phdr(find_rocksdb, text);
        break;
    case LMDB: {
        int major, minor, patch;
        mdb_version(&major, &minor, &patch);
        snprintf(text, sizeof text, "LMDB %d.%d.%d", major, minor, patch);
        break;
    }
    }
    return text;
}

/* ---- workloads ---- */

static uint64_t splitmix(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* The key of `index`: zero-padded decimal of key_size bytes (its last digits if longer). */
static void make_key(uint64_t index, char *key) {
    for (long position = flags.key_size - 1; position >= 0; position--) {
        key[position] = (char)('0' + index % 10);
        index /= 10;
    }
}

struct job {
    enum workload workload;
    uint64_t seed;
    long operations, bytes, found;
    double seconds;
    /* fillsync: each durable put's latency in microseconds (all kept, then sorted: the
     * percentiles printed are exact, not estimated). */
    double *latencies;
};

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *run_job(void *argument) {
    struct job *job = argument;
    uint64_t random = job->seed, num = (uint64_t)flags.num;
    size_t key_size = (size_t)flags.key_size, value_size = (size_t)flags.value_size;
    char *key = checked_malloc(key_size);
    char *value = checked_malloc(value_size + 8);
    struct reader reader = {0};
    long reads = flags.reads < 0 ? flags.num : flags.reads;
    double began = now();
    switch (job->workload) {
    case FILLSEQ: case FILLRANDOM: case OVERWRITE: case FILLSYNC: {
        int sync = job->workload == FILLSYNC, sequential = job->workload == FILLSEQ;
        long count = !sync ? flags.num : flags.writes >= 0 ? flags.writes : (flags.num / 1000 > 0 ? flags.num / 1000 : 1);
        if (sync) job->latencies = checked_malloc((size_t)(count > 0 ? count : 1) * sizeof(double));
        for (long i = 0; i < count; i++) {
            make_key(sequential ? (uint64_t)i : splitmix(&random) % num, key);
            for (size_t b = 0; b < value_size; b += 8) {
                uint64_t word = splitmix(&random);
                memcpy(value + b, &word, 8);
            }
            if (sync) {
                double put_began = now();
                engine_put(key, key_size, value, value_size, sync);
                job->latencies[i] = (now() - put_began) * 1e6;
            } else {
                engine_put(key, key_size, value, value_size, sync);
            }
        }
        job->operations = count;
        job->bytes = count * (long)(key_size + value_size);
        job->found = -1;
        break;
    }
    case READRANDOM:
        for (long i = 0; i < reads; i++) {
            make_key(splitmix(&random) % num, key);
            long length = engine_get(&reader, key, key_size);
            if (length >= 0) {
                job->found++;
                job->bytes += (long)key_size + length;
            }
        }
        job->operations = reads;
        break;
    case SEEKRANDOM:
        for (long i = 0; i < reads; i++) {
            make_key(splitmix(&random) % num, key);
            job->found += engine_seek(&reader, key, key_size);
        }
        job->operations = reads;
        break;
    case READSEQ:
        job->operations = engine_scan(&reader, reads, &job->bytes);
        job->found = -1;
        break;
    }
    job->seconds = now() - began;
    reader_free(&reader);
    free(key);
    free(value);
    return NULL;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The value at `percentile` of `n` sorted samples (nearest rank). */
static double rank(const double *sorted, long n, double percentile) {
    long index = (long)(percentile / 100.0 * (double)n + 0.999999) - 1;
    if (index < 0) index = 0;
    if (index >= n) index = n - 1;
    return sorted[index];
}

static void run_benchmark(enum workload workload, int ordinal) {
    const char *name = workload_names[workload];
    uint64_t hash = 0xCBF29CE484222325ULL; /* FNV-1a of the name, as kvctl bench */
    for (const char *p = name; *p; p++) hash = (hash ^ (uint8_t)*p) * 0x100000001B3ULL;
    uint64_t stream = flags.seed ^ hash ^ ((uint64_t)ordinal * 0xD1B54A32D192ED03ULL);
    int threads = (int)flags.threads;
    struct job *jobs = checked_malloc((size_t)threads * sizeof *jobs);
    pthread_t *ids = checked_malloc((size_t)threads * sizeof *ids);
    double start = now();
    for (int t = 0; t < threads; t++) {
        jobs[t] = (struct job){.workload = workload, .seed = stream + (uint64_t)t * 0x9E3779B9ULL};
        int rc = pthread_create(&ids[t], NULL, run_job, &jobs[t]);
        if (rc) die("pthread_create", strerror(rc));
    }
    for (int t = 0; t < threads; t++) pthread_join(ids[t], NULL);
    double elapsed = now() - start;
    long operations = 0, bytes = 0, found = 0;
    double thread_seconds = 0;
    for (int t = 0; t < threads; t++) {
        operations += jobs[t].operations;
        bytes += jobs[t].bytes;
        found += jobs[t].found;
        thread_seconds += jobs[t].seconds;
    }
    printf("%-12s : %11.3f micros/op %ld ops/sec %.3f seconds %ld operations;", name,
           operations ? thread_seconds * 1e6 / (double)operations : 0.0,
           elapsed > 0 ? (long)((double)operations / elapsed) : 0L, elapsed, operations);
    if (bytes > 0) printf(" %6.1f MB/s", (double)bytes / 1048576.0 / elapsed);
    if (jobs[0].found >= 0) printf(" (%ld of %ld found)", found, operations);
    if (jobs[0].latencies && operations > 0) {
        double *all = checked_malloc((size_t)operations * sizeof(double));
        long n = 0;
        for (int t = 0; t < threads; t++) {
            memcpy(all + n, jobs[t].latencies, (size_t)jobs[t].operations * sizeof(double));
            n += jobs[t].operations;
        }
        qsort(all, (size_t)n, sizeof(double), compare_doubles);
        printf("; latency us p50 %.0f p99 %.0f p99.9 %.0f max %.0f", rank(all, n, 50), rank(all, n, 99), rank(all, n, 99.9),
               all[n - 1]);
        free(all);
    }
    for (int t = 0; t < threads; t++) free(jobs[t].latencies);
    printf("\n");
    fflush(stdout);
    free(jobs);
    free(ids);
}

/* ---- flags ---- */

static int flag(const char *argument, const char *name, const char **value) {
    size_t length = strlen(name);
    if (strncmp(argument, name, length) || argument[length] != '=') return 0;
    *value = argument + length + 1;
    return 1;
}

static long number(const char *name, const char *text) {
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno || end == text || *end) die(name, "expects an integer");
    return value;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (flag(argv[i], "--engine", &v)) {
            if (!strcmp(v, "leveldb")) flags.engine = LEVELDB;
            else if (!strcmp(v, "rocksdb")) flags.engine = ROCKSDB;
            else if (!strcmp(v, "lmdb")) flags.engine = LMDB;
            else die("--engine", "leveldb, rocksdb or lmdb");
        } else if (flag(argv[i], "--db", &v)) flags.db = v;
        else if (flag(argv[i], "--benchmarks", &v)) {
            if (snprintf(flags.benchmarks, sizeof flags.benchmarks, "%s", v) >= (int)sizeof flags.benchmarks)
                die("--benchmarks", "too long");
        } else if (flag(argv[i], "--num", &v)) flags.num = number("--num", v);
        else if (flag(argv[i], "--reads", &v)) flags.reads = number("--reads", v);
        else if (flag(argv[i], "--writes", &v)) flags.writes = number("--writes", v);
        else if (flag(argv[i], "--value_size", &v)) flags.value_size = number("--value_size", v);
        else if (flag(argv[i], "--key_size", &v)) flags.key_size = number("--key_size", v);
        else if (flag(argv[i], "--threads", &v)) flags.threads = number("--threads", v);
        else if (flag(argv[i], "--seed", &v)) {
            char *end;
            errno = 0;
            flags.seed = strtoull(v, &end, 10);
            if (errno || end == v || *end) die("--seed", "expects an unsigned integer");
        } else die(argv[i], "unknown flag (--engine --db --benchmarks --num --reads --writes --value_size --key_size --threads --seed)");
    }
    if (flags.num <= 0 || flags.threads <= 0 || flags.threads > 4096 || flags.value_size < 0 || flags.key_size < 8 || flags.key_size > 1024)
        die("flags", "--num and --threads must be positive (threads at most 4096), --key_size 8 to 1024, --value_size at least 0");
    if (!*flags.db) die("--db", "must not be empty");

    enum workload list[256];
    int count = 0;
    for (char *save = NULL, *name = strtok_r(flags.benchmarks, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        int w = 0;
        while (w <= SEEKRANDOM && strcmp(name, workload_names[w])) w++;
        if (w > SEEKRANDOM) die(name, "unknown benchmark (fillseq fillrandom overwrite fillsync readrandom readseq seekrandom)");
        if (count == (int)(sizeof list / sizeof list[0])) die("--benchmarks", "too many");
        list[count++] = (enum workload)w;
    }

    printf("peerbench %s: keys %ld bytes, values %ld bytes, %ld keys x %ld threads, db %s\n", engine_version(),
           flags.key_size, flags.value_size, flags.num, flags.threads, flags.db);
    fflush(stdout);
    for (int ordinal = 0; ordinal < count; ordinal++) {
        enum workload w = list[ordinal];
        int fill = w == FILLSEQ || w == FILLRANDOM || w == FILLSYNC;
        if (fill) {
            engine_close();
            remove_database();
        }
        /* LMDB: MDB_NOSYNC for the non-sync writers; a reader opens with default flags. */
        engine_open(w == FILLSEQ || w == FILLRANDOM || w == OVERWRITE);
        run_benchmark(w, ordinal);
    }
    engine_close();
    return 0;
}
