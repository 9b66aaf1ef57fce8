/* peerbench: kvctl bench's workloads on LevelDB, RocksDB or LMDB, through their C
 * libraries, printing kvctl bench's (db_bench's) report lines, so that
 * scripts/compare-peers.sh can put the four engines side by side.
 *
 *   cc -O2 -Wall -Wextra -o peerbench scripts/peers/peerbench.c -lleveldb -lrocksdb -llmdb -lpthread
 *   peerbench --engine=leveldb --db=DIR --benchmarks=fillrandom,readrandom --num=1000000
 *
 * Workloads, flags and keys are kvctl bench's (Sources/kvctl/Bench.swift): a key is its
 * index as zero-padded decimal of --key_size bytes, a value --value_size random bytes;
 * fill* benchmarks start from an empty database, the others read what the last one left;
 * every write is one put; --num, --reads and --writes count per thread.
 *
 * Each engine runs at its library's defaults, but for no compression:
 * - LevelDB: 4 MiB write buffer, 8 MiB block cache, no bloom filter, 2 MiB tables,
 *   reads through the kernel's page cache.
 * - RocksDB (rocksdb_options_create, i.e. Options()): 64 MiB write buffer, its default
 *   block-based table (default block cache, no bloom filter), page cache reads.
 * - LMDB: a B+tree in one memory map (map size 64 GiB, sparse), read through the page
 *   cache. Writes of fill* other than fillsync use MDB_NOSYNC (the commit reaches the
 *   page cache, not the disk: the analogue of a non-sync put in the others); fillsync
 *   commits durably. One write transaction per put. Each point read or seek runs in a
 *   read transaction of its own (mdb_txn_renew / mdb_txn_reset, as LMDB recommends for
 *   short reads), readseq in one.
 * Seeks open an iterator (a cursor) per seek in every engine, as LevelDB's db_bench and
 * kvctl bench do.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
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

static struct {
    enum engine_kind engine;
    const char *db;
    char benchmarks[1024];
    long num, reads, writes, value_size, key_size, threads;
    uint64_t seed;
} flags = {LEVELDB, "/tmp/peerbench", "fillrandom,readrandom,seekrandom,readseq", 1000000, -1, -1, 100, 16, 1, 301};

static void die(const char *what, const char *why) {
    fprintf(stderr, "peerbench: %s: %s\n", what, why ? why : "failed");
    exit(1);
}

/* ---- the engines behind one interface ---- */

static leveldb_t *ldb;
static leveldb_options_t *lopts;
static leveldb_writeoptions_t *lwrite;
static leveldb_readoptions_t *lread;
static rocksdb_t *rdb;
static rocksdb_options_t *ropts;
static rocksdb_writeoptions_t *rwrite;
static rocksdb_readoptions_t *rread;
static MDB_env *env;
static MDB_dbi dbi;
static int env_flags = -1;

static void engine_close(void) {
    if (ldb) { leveldb_close(ldb); ldb = NULL; }
    if (rdb) { rocksdb_close(rdb); rdb = NULL; }
    if (env) { mdb_env_close(env); env = NULL; env_flags = -1; }
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)st; (void)type; (void)ftw;
    return remove(path);
}

static void engine_open(int sync_writes) {
    char *err = NULL;
    switch (flags.engine) {
    case LEVELDB:
        if (ldb) return;
        if (!lopts) {
            lopts = leveldb_options_create();
            leveldb_options_set_create_if_missing(lopts, 1);
            leveldb_options_set_compression(lopts, leveldb_no_compression);
            lwrite = leveldb_writeoptions_create();
            lread = leveldb_readoptions_create();
        }
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
            rread = rocksdb_readoptions_create();
        }
        rdb = rocksdb_open(ropts, flags.db, &err);
        if (err) die("rocksdb_open", err);
        break;
    case LMDB: {
        int wanted = sync_writes ? 0 : MDB_NOSYNC;
        if (env && env_flags == wanted) return;
        engine_close();
        mkdir(flags.db, 0755);
        int rc = mdb_env_create(&env);
        if (!rc) rc = mdb_env_set_mapsize(env, (size_t)64 << 30);
        if (!rc) rc = mdb_env_set_maxreaders(env, 256);
        if (!rc) rc = mdb_env_open(env, flags.db, wanted, 0644);
        if (rc) die("mdb_env_open", mdb_strerror(rc));
        MDB_txn *txn;
        rc = mdb_txn_begin(env, NULL, 0, &txn);
        if (!rc) rc = mdb_dbi_open(txn, NULL, 0, &dbi);
        if (!rc) rc = mdb_txn_commit(txn);
        if (rc) die("mdb_dbi_open", mdb_strerror(rc));
        env_flags = wanted;
        break;
    }
    }
}

static void engine_put(const char *key, size_t klen, const char *value, size_t vlen, int sync) {
    char *err = NULL;
    switch (flags.engine) {
    case LEVELDB: {
        leveldb_writeoptions_set_sync(lwrite, (unsigned char)sync);
        leveldb_put(ldb, lwrite, key, klen, value, vlen, &err);
        if (err) die("leveldb_put", err);
        break;
    }
    case ROCKSDB:
        rocksdb_writeoptions_set_sync(rwrite, (unsigned char)sync);
        rocksdb_put(rdb, rwrite, key, klen, value, vlen, &err);
        if (err) die("rocksdb_put", err);
        break;
    case LMDB: {
        MDB_txn *txn;
        MDB_val k = {klen, (void *)key}, v = {vlen, (void *)value};
        int rc = mdb_txn_begin(env, NULL, 0, &txn);
        if (!rc) rc = mdb_put(txn, dbi, &k, &v, 0);
        if (!rc) rc = mdb_txn_commit(txn);
        if (rc) die("mdb_put", mdb_strerror(rc));
        break;
    }
    }
}

/* Per-thread read state (LMDB's read transaction and cursor). */
struct reader {
    MDB_txn *txn;
    MDB_cursor *cursor;
};

static void reader_begin(struct reader *r) {
    if (flags.engine != LMDB) return;
    int rc = r->txn ? mdb_txn_renew(r->txn) : mdb_txn_begin(env, NULL, MDB_RDONLY, &r->txn);
    if (!rc) rc = r->cursor ? mdb_cursor_renew(r->txn, r->cursor) : mdb_cursor_open(r->txn, dbi, &r->cursor);
    if (rc) die("mdb read transaction", mdb_strerror(rc));
}

static void reader_end(struct reader *r) {
    if (flags.engine == LMDB && r->txn) mdb_txn_reset(r->txn);
}

static void reader_free(struct reader *r) {
    if (flags.engine != LMDB) return;
    if (r->cursor) mdb_cursor_close(r->cursor);
    if (r->txn) mdb_txn_abort(r->txn);
}

/* Point read: returns the value's length, or -1 when absent. */
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
        long found = rc == 0 ? (long)v.mv_size : -1;
        if (rc && rc != MDB_NOTFOUND) die("mdb_get", mdb_strerror(rc));
        reader_end(r);
        return found;
    }
    }
    return -1;
}

/* Seek with a fresh iterator: 1 when the first entry at or after `key` is `key`. */
static int engine_seek(struct reader *r, const char *key, size_t klen) {
    const char *got = NULL;
    size_t glen = 0;
    int equal = 0;
    switch (flags.engine) {
    case LEVELDB: {
        leveldb_iterator_t *it = leveldb_create_iterator(ldb, lread);
        leveldb_iter_seek(it, key, klen);
        if (leveldb_iter_valid(it)) {
            got = leveldb_iter_key(it, &glen);
            equal = glen == klen && memcmp(got, key, klen) == 0;
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
        }
        rocksdb_iter_destroy(it);
        break;
    }
    case LMDB: {
        reader_begin(r);
        MDB_val k = {klen, (void *)key}, v;
        int rc = mdb_cursor_get(r->cursor, &k, &v, MDB_SET_RANGE);
        if (rc == 0) equal = k.mv_size == klen && memcmp(k.mv_data, key, klen) == 0;
        else if (rc != MDB_NOTFOUND) die("mdb_cursor_get", mdb_strerror(rc));
        reader_end(r);
        break;
    }
    }
    return equal;
}

/* Walks from the first entry, at most `limit` entries; returns the count, adds the bytes. */
static long engine_scan(struct reader *r, long limit, long *bytes) {
    long count = 0;
    size_t klen, vlen;
    switch (flags.engine) {
    case LEVELDB: {
        leveldb_iterator_t *it = leveldb_create_iterator(ldb, lread);
        for (leveldb_iter_seek_to_first(it); leveldb_iter_valid(it) && count < limit; leveldb_iter_next(it)) {
            leveldb_iter_key(it, &klen);
            leveldb_iter_value(it, &vlen);
            *bytes += (long)(klen + vlen);
            count++;
        }
        leveldb_iter_destroy(it);
        break;
    }
    case ROCKSDB: {
        rocksdb_iterator_t *it = rocksdb_create_iterator(rdb, rread);
        for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it) && count < limit; rocksdb_iter_next(it)) {
            rocksdb_iter_key(it, &klen);
            rocksdb_iter_value(it, &vlen);
            *bytes += (long)(klen + vlen);
            count++;
        }
        rocksdb_iter_destroy(it);
        break;
    }
    case LMDB: {
        reader_begin(r);
        MDB_val k, v;
        int rc = mdb_cursor_get(r->cursor, &k, &v, MDB_FIRST);
        while (rc == 0 && count < limit) {
            *bytes += (long)(k.mv_size + v.mv_size);
            count++;
            rc = mdb_cursor_get(r->cursor, &k, &v, MDB_NEXT);
        }
        if (rc && rc != MDB_NOTFOUND) die("mdb_cursor_get", mdb_strerror(rc));
        reader_end(r);
        break;
    }
    }
    return count;
}

static const char *engine_version(void) {
    static char text[64];
    switch (flags.engine) {
    case LEVELDB: snprintf(text, sizeof text, "LevelDB %d.%d", leveldb_major_version(), leveldb_minor_version()); break;
    case ROCKSDB: snprintf(text, sizeof text, "RocksDB (librocksdb)"); break;
    case LMDB: snprintf(text, sizeof text, "%s", mdb_version(NULL, NULL, NULL)); break;
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

/* The key of index `index`: zero-padded decimal, key_size bytes (its last digits if longer). */
static void make_key(long index, char *key) {
    for (long position = flags.key_size - 1; position >= 0; position--) {
        key[position] = (char)('0' + index % 10);
        index /= 10;
    }
}

struct job {
    const char *name;
    int thread;
    uint64_t seed;
    long operations, bytes, found;
    int counts_found;
    double seconds;
};

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *run_job(void *argument) {
    struct job *job = argument;
    uint64_t random = job->seed;
    char *key = malloc((size_t)flags.key_size);
    char *value = malloc((size_t)flags.value_size + 8);
    struct reader reader = {0};
    long reads = flags.reads < 0 ? flags.num : flags.reads;
    const char *name = job->name;
    double began = now();
    if (!strcmp(name, "fillseq") || !strcmp(name, "fillrandom") || !strcmp(name, "overwrite") || !strcmp(name, "fillsync")) {
        int sync = !strcmp(name, "fillsync");
        long count = sync ? (flags.writes < 0 ? (flags.num / 1000 > 0 ? flags.num / 1000 : 1) : flags.writes) : flags.num;
        for (long i = 0; i < count; i++) {
            long index = !strcmp(name, "fillseq") ? i : (long)(splitmix(&random) % (uint64_t)flags.num);
            for (long b = 0; b < flags.value_size; b += 8) {
                uint64_t word = splitmix(&random);
                memcpy(value + b, &word, 8);
            }
            make_key(index, key);
            engine_put(key, (size_t)flags.key_size, value, (size_t)flags.value_size, sync);
        }
        job->operations = count;
        job->bytes = count * (flags.key_size + flags.value_size);
    } else if (!strcmp(name, "readrandom")) {
        for (long i = 0; i < reads; i++) {
            make_key((long)(splitmix(&random) % (uint64_t)flags.num), key);
            long length = engine_get(&reader, key, (size_t)flags.key_size);
            if (length >= 0) {
                job->found++;
                job->bytes += flags.key_size + length;
            }
        }
        job->operations = reads;
        job->counts_found = 1;
    } else if (!strcmp(name, "seekrandom")) {
        for (long i = 0; i < reads; i++) {
            make_key((long)(splitmix(&random) % (uint64_t)flags.num), key);
            job->found += engine_seek(&reader, key, (size_t)flags.key_size);
        }
        job->operations = reads;
        job->counts_found = 1;
    } else if (!strcmp(name, "readseq")) {
        job->operations = engine_scan(&reader, flags.reads < 0 ? flags.num : flags.reads, &job->bytes);
    }
    job->seconds = now() - began;
    reader_free(&reader);
    free(key);
    free(value);
    return NULL;
}

static void run_benchmark(const char *name, int ordinal) {
    uint64_t hash = 0xCBF29CE484222325ULL; /* FNV-1a of the name, as kvctl bench */
    for (const char *p = name; *p; p++) hash = (hash ^ (uint8_t)*p) * 0x100000001B3ULL;
    uint64_t stream = flags.seed ^ hash ^ ((uint64_t)ordinal * 0xD1B54A32D192ED03ULL);
    int threads = (int)flags.threads;
    struct job *jobs = calloc((size_t)threads, sizeof *jobs);
    pthread_t *ids = calloc((size_t)threads, sizeof *ids);
    double start = now();
    for (int t = 0; t < threads; t++) {
        jobs[t] = (struct job){.name = name, .thread = t, .seed = stream + (uint64_t)t * 0x9E3779B9ULL};
        if (pthread_create(&ids[t], NULL, run_job, &jobs[t])) die("pthread_create", strerror(errno));
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
    if (jobs[0].counts_found) printf(" (%ld of %ld found)", found, operations);
    printf("\n");
    fflush(stdout);
    free(jobs);
    free(ids);
}

static int flag(const char *argument, const char *name, const char **value) {
    size_t length = strlen(name);
    if (strncmp(argument, name, length) || argument[length] != '=') return 0;
    *value = argument + length + 1;
    return 1;
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
        else if (flag(argv[i], "--benchmarks", &v)) snprintf(flags.benchmarks, sizeof flags.benchmarks, "%s", v);
        else if (flag(argv[i], "--num", &v)) flags.num = atol(v);
        else if (flag(argv[i], "--reads", &v)) flags.reads = atol(v);
        else if (flag(argv[i], "--writes", &v)) flags.writes = atol(v);
        else if (flag(argv[i], "--value_size", &v)) flags.value_size = atol(v);
        else if (flag(argv[i], "--key_size", &v)) flags.key_size = atol(v);
        else if (flag(argv[i], "--threads", &v)) flags.threads = atol(v);
        else if (flag(argv[i], "--seed", &v)) flags.seed = strtoull(v, NULL, 10);
        else die(argv[i], "unknown flag (--engine --db --benchmarks --num --reads --writes --value_size --key_size --threads --seed)");
    }
    if (flags.num <= 0 || flags.threads <= 0 || flags.value_size < 0 || flags.key_size < 8 || flags.key_size > 1024)
        die("flags", "--num and --threads must be positive, --key_size 8 to 1024, --value_size at least 0");
    printf("peerbench %s: keys %ld bytes, values %ld bytes, %ld keys x %ld threads, db %s\n", engine_version(),
           flags.key_size, flags.value_size, flags.num, flags.threads, flags.db);
    int ordinal = 0;
    for (char *save = NULL, *name = strtok_r(flags.benchmarks, ",", &save); name; name = strtok_r(NULL, ",", &save), ordinal++) {
        if (strcmp(name, "fillseq") && strcmp(name, "fillrandom") && strcmp(name, "overwrite") && strcmp(name, "fillsync")
            && strcmp(name, "readrandom") && strcmp(name, "seekrandom") && strcmp(name, "readseq"))
            die(name, "unknown benchmark (fillseq fillrandom overwrite fillsync readrandom seekrandom readseq)");
        int fill = !strncmp(name, "fill", 4);
        if (fill) {
            engine_close();
            nftw(flags.db, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        }
        engine_open(!strcmp(name, "fillsync"));
        run_benchmark(name, ordinal);
    }
    engine_close();
    return 0;
}
