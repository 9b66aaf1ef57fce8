#!/usr/bin/env bash
# KVEngine (`kvctl bench`) beside RocksDB's `db_bench`, same workloads, same flags, one run.
#
#   scripts/compare-rocksdb.sh                 # 1M keys, 3 rounds
#   NUM=10000000 RUNS=1 SYNC_THREADS= scripts/compare-rocksdb.sh
#   SYNC_THREADS="1 4 16" SYNC_WRITES=2000 scripts/compare-rocksdb.sh
#
# Prints, per benchmark, the median ops/sec of each side over RUNS rounds and the ratio
# kvengine/rocksdb. Keys 16 bytes, values 100 bytes, no compression. Both databases live
# under BENCH_DIR (default ./bench-data), on the same file system.
set -euo pipefail
cd "$(dirname "$0")/.."

NUM=${NUM:-1000000}
RUNS=${RUNS:-3}
BENCHMARKS=${BENCHMARKS:-fillseq,fillrandom,overwrite,readrandom,readseq,seekrandom}
# The read phases after the fills reuse the database the last fill left.
SYNC_THREADS=${SYNC_THREADS:-1 4 16}
SYNC_WRITES=${SYNC_WRITES:-2000}
READS=${READS:-$NUM}   # reads per read benchmark (NUM=10000000 READS=1000000 keeps a run short)
BENCH_DIR=${BENCH_DIR:-bench-data}
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)

command -v db_bench >/dev/null || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq rocksdb-tools; }
make -s build >/dev/null
KVCTL=.build/release/kvctl
mkdir -p "$BENCH_DIR"

COMMON="--num=$NUM --value_size=100 --key_size=16 --compression_type=none"
declare -A K R

# "name ops/sec" per report line; a benchmark that runs again in one invocation is named
# name2 the second time.
ops() {
  sed -n 's/^\([a-z]*\) *: .* micros\/op \([0-9]*\) ops\/sec.*/\1 \2/p' |
    awk '{ n = $1; if (seen[n]++) n = n seen[n]; print n, $2 }'
}

run_pair() { # label extra-flags... ; appends ops/sec per benchmark to K and R
  local label=$1; shift
  local name value
  while read -r name value; do R["$label$name"]+="$value "; done < <(
    db_bench --db="$BENCH_DIR/rocksdb" $COMMON --compression_type=none "$@" 2>/dev/null | ops)
  while read -r name value; do K["$label$name"]+="$value "; done < <(
    "$KVCTL" bench --db="$BENCH_DIR/kvengine" $COMMON "$@" | ops)
}

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

report() { # key shown-name
  local k r
  k=$(echo "${K[$1]:-}" | median); r=$(echo "${R[$1]:-}" | median)
  [ -n "$k" ] && [ -n "$r" ] || { echo "$2 (missing figures)"; return; }
  printf '%-22s kvengine=%-9s rocksdb=%-9s ratio=%s   (runs: kvengine %s; rocksdb %s)\n' "$2" "$k" "$r" \
    "$(awk -v k="$k" -v r="$r" 'BEGIN {printf "%.2f", k / r}')" "${K[$1]}" "${R[$1]}"
}

# Write amplification, from one fill: RocksDB's flush and compaction byte tickers, and
# kvctl bench's own line (table bytes written by flushes and compactions / bytes flushed).
wamp() {
  local r k
  r=$(db_bench --db="$BENCH_DIR/rocksdb" $COMMON --compression_type=none --benchmarks=fillrandom,overwrite \
        --statistics=1 2>/dev/null | awk '$1 == "rocksdb.flush.write.bytes" {f=$4} $1 == "rocksdb.compact.write.bytes" {c=$4}
        END {if (f > 0) printf "%.2f", (f + c) / f}')
  local line
  line=$("$KVCTL" bench --db="$BENCH_DIR/kvengine" $COMMON --benchmarks=fillrandom,overwrite,stats | grep "^kvengine stats")
  k=$(echo "$line" | sed -n 's/.*write-amp \([0-9.]*\).*/\1/p')
  echo "write amplification after fillrandom+overwrite: kvengine=$k rocksdb=$r"
  echo "$line"
}

# fio's 4 KiB random reads at queue depth 32 on a file in the same directory: the device
# limit batched lookups are measured against.
fio_qd32() {
  command -v fio >/dev/null || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq fio; }
  fio --name=qd32 --filename="$BENCH_DIR/fio.data" --size=1G --ioengine=io_uring --direct=1 --rw=randread \
      --bs=4k --iodepth=32 --runtime=10 --time_based --output-format=terse 2>/dev/null | cut -d';' -f8
  rm -f "$BENCH_DIR/fio.data"
}

echo "# kvengine vs rocksdb db_bench $(dpkg-query -W -f='${Version}' rocksdb-tools 2>/dev/null): num=$NUM, $RUNS rounds, $(uname -r)"
SMALL_CACHE=${SMALL_CACHE:-8388608}
LARGE_CACHE=${LARGE_CACHE:-$((NUM * 200 > 1073741824 ? NUM * 200 : 1073741824))}
declare -a FIO
for round in $(seq "$RUNS"); do
  # Writes, then reads with db_bench's default 8 MiB cache (RocksDB also has the kernel's
  # page cache, which O_DIRECT gives up).
  run_pair "" --benchmarks="$BENCHMARKS" --cache_size="$SMALL_CACHE" --reads="$READS"
  # Reads of the same data with the cache smaller than the data and no page cache on
  # either side (RocksDB with direct reads): every miss is a device read.
  run_pair "small-" --benchmarks=readrandom,multireadrandom,seekrandom --use_existing_db=1 --use_direct_reads=true \
    --cache_size="$SMALL_CACHE" --reads=$((READS / 10)) --batch_size=32
  # And with a cache larger than the data, filled first by db_bench's readtocache (one
  # sequential pass over every key: RocksDB's own page cache is warm already, KVEngine's
  # block cache starts empty in a new process).
  # readseq walks --reads entries (a fraction of a second at 10M, so its figure swings);
  # a second readtocache walks every key from the warm cache.
  run_pair "large-" --benchmarks=readtocache,readrandom,seekrandom,readseq,readtocache --use_existing_db=1 \
    --cache_size="$LARGE_CACHE" --reads="$READS"
  FIO+=("$(fio_qd32)")
  # Batched gets long enough for the queue to stay full (KVEngine only: 32 reads in
  # flight, as fio's QD32).
  while read -r name value; do K["big-$name"]+="$value "; done < <(
    "$KVCTL" bench --db="$BENCH_DIR/kvengine" $COMMON --benchmarks=multireadrandom --use_existing_db=1 \
      --cache_size="$SMALL_CACHE" --reads=$((READS / 10)) --batch_size=1024 --read_depth=32 | ops)
  for t in $SYNC_THREADS; do
    run_pair "t$t-" --benchmarks=fillsync --threads="$t" --writes="$SYNC_WRITES" --num=$((SYNC_WRITES * 10))
  done
done
for b in ${BENCHMARKS//,/ }; do report "$b" "$b"; done
report small-readrandom "readrandom cache<data"
report small-multireadrandom "multiread cache<data"
report small-seekrandom "seekrandom cache<data"
report large-readtocache "readtocache cache>data"
report large-readrandom "readrandom cache>data"
report large-seekrandom "seekrandom cache>data"
report large-readseq "readseq cache>data"
report large-readtocache2 "readseq all cache>data"
for t in $SYNC_THREADS; do report "t$t-fillsync" "fillsync threads=$t"; done
fio=$(printf '%s\n' "${FIO[@]}" | median)
k=$(echo "${K[small-multireadrandom]:-}" | median)
echo "batched gets (32 keys, cache<data) vs fio 4k randread QD32: kvengine=$k fio=$fio ratio=$(awk -v k="$k" -v f="$fio" 'BEGIN {if (f > 0) printf "%.2f", k / f}')"
k=$(echo "${K[big-multireadrandom]:-}" | median)
echo "batched gets (1024 keys, 32 reads in flight) vs fio 4k randread QD32: kvengine=$k fio=$fio ratio=$(awk -v k="$k" -v f="$fio" 'BEGIN {if (f > 0) printf "%.2f", k / f}')   (runs: ${K[big-multireadrandom]:-})"
wamp
rm -rf "$BENCH_DIR/rocksdb" "$BENCH_DIR/kvengine"
