#!/usr/bin/env bash
# KVEngine (`kvctl bench`) beside LevelDB, RocksDB and LMDB (scripts/peers/peerbench.c over
# their C libraries), the same workloads and flags, interleaved in one run.
#
#   scripts/compare-peers.sh                          # 1M keys, 3 rounds
#   NUM=10000000 READS=1000000 scripts/compare-peers.sh
#   BENCHMARKS=fillseq,readrandom,readseq RUNS=5 scripts/compare-peers.sh
#   CACHE_SIZE=8388608 scripts/compare-peers.sh      # kvctl's cache (default: the library's)
#
# Prints, per workload, each engine's median ops/s over RUNS rounds, KVEngine's ratio to
# the best of LevelDB and RocksDB and to LMDB, and each database's size after its fill.
# Keys 16 bytes, values 100 bytes, no compression, every engine at its defaults otherwise
# (see scripts/peers/peerbench.c). The databases live under BENCH_DIR (default
# ./bench-data), one file system for all; KEEP=1 keeps them.
set -euo pipefail
cd "$(dirname "$0")/.."

NUM=${NUM:-1000000}
RUNS=${RUNS:-3}
READS=${READS:-$NUM}
BENCHMARKS=${BENCHMARKS:-fillrandom,readrandom,seekrandom,readseq}
BENCH_DIR=${BENCH_DIR:-bench-data}
ENGINES="kvengine leveldb rocksdb lmdb"
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)

for header in leveldb/c.h rocksdb/c.h lmdb.h; do
  [ -e "/usr/include/$header" ] || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libleveldb-dev librocksdb-dev liblmdb-dev; break; }
done
make -s build >/dev/null
KVCTL=.build/release/kvctl
PEER=.build/peerbench
if [ ! -x "$PEER" ] || [ scripts/peers/peerbench.c -nt "$PEER" ]; then
  cc -O2 -Wall -Wextra -o "$PEER" scripts/peers/peerbench.c -lleveldb -lrocksdb -llmdb -lpthread
fi
mkdir -p "$BENCH_DIR"
results=$(mktemp)
trap 'rm -f "$results"' EXIT

COMMON="--num=$NUM --reads=$READS --value_size=100 --key_size=16 --benchmarks=$BENCHMARKS"
CACHE=${CACHE_SIZE:+--cache_size=$CACHE_SIZE}

run() { # engine: prints "engine workload ops" per report line, "engine size bytes" after
  local engine=$1 db="$BENCH_DIR/peers-$1"
  rm -rf "$db"
  if [ "$engine" = kvengine ]; then
    # shellcheck disable=SC2086
    "$KVCTL" bench --db="$db" $COMMON $CACHE
  else
    # shellcheck disable=SC2086
    "$PEER" --engine="$engine" --db="$db" $COMMON
  fi | awk -v e="$engine" '/ops\/sec/ { n = $1; if (seen[n]++) n = n seen[n]; print e, n, $5 }'
  echo "$engine size $(du -s -B1 "$db" | cut -f1)"
  [ "${KEEP:-0}" = 1 ] || rm -rf "$db"
}

for round in $(seq 1 "$RUNS"); do
  for engine in $ENGINES; do run "$engine" >> "$results"; done
done

echo "# kvengine vs leveldb, rocksdb, lmdb: num=$NUM reads=$READS, $RUNS rounds, $(uname -r), $(date -u +%Y-%m-%d)"
python3 - "$results" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(lambda: collections.defaultdict(list))
order = []
for line in open(sys.argv[1]):
    engine, workload, value = line.split()
    if workload not in order: order.append(workload)
    runs[workload][engine].append(int(value))
engines = ["kvengine", "leveldb", "rocksdb", "lmdb"]
print(f"{'workload':12} " + " ".join(f"{e:>11}" for e in engines) + f" {'kv/best-lsm':>12} {'kv/lmdb':>8}")
for workload in order:
    med = {e: statistics.median(runs[workload][e]) for e in engines if runs[workload][e]}
    if workload == "size":
        print(f"{'MiB on disk':12} " + " ".join(f"{med.get(e, 0) / 2**20:11.0f}" for e in engines))
        continue
    best = max(med.get("leveldb", 0), med.get("rocksdb", 0))
    kv = med.get("kvengine", 0)
    ratio = f"{kv / best:12.2f}" if best else f"{'-':>12}"
    lmdb = f"{kv / med['lmdb']:8.2f}" if med.get("lmdb") else f"{'-':>8}"
    print(f"{workload:12} " + " ".join(f"{med.get(e, 0):11,.0f}" for e in engines) + f" {ratio} {lmdb}")
print()
print("runs:")
for workload in order:
    if workload != "size":
        print(f"  {workload:12} " + "; ".join(f"{e} {runs[workload][e]}" for e in engines))
PY
