#!/usr/bin/env bash
# KVEngine (`kvctl bench`) beside RocksDB's `db_bench`, same workloads, same flags, one run.
#
#   scripts/compare-rocksdb.sh                 # 1M keys, 3 rounds
#   NUM=10000000 RUNS=1 scripts/compare-rocksdb.sh
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
SYNC_THREADS=${SYNC_THREADS:-1 4 16}
SYNC_WRITES=${SYNC_WRITES:-2000}
BENCH_DIR=${BENCH_DIR:-bench-data}
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)

command -v db_bench >/dev/null || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq rocksdb-tools; }
make -s build >/dev/null
KVCTL=.build/release/kvctl
mkdir -p "$BENCH_DIR"

COMMON="--num=$NUM --value_size=100 --key_size=16"
declare -A K R

ops() { sed -n 's/^\([a-z]*\) *: .* micros\/op \([0-9]*\) ops\/sec.*/\1 \2/p'; }

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

echo "# kvengine vs rocksdb db_bench $(dpkg-query -W -f='${Version}' rocksdb-tools 2>/dev/null): num=$NUM, $RUNS rounds, $(uname -r)"
for round in $(seq "$RUNS"); do
  run_pair "" --benchmarks="$BENCHMARKS"
  for t in $SYNC_THREADS; do
    run_pair "t$t-" --benchmarks=fillsync --threads="$t" --writes="$SYNC_WRITES" --num=$((SYNC_WRITES * 10))
  done
done
for b in ${BENCHMARKS//,/ }; do report "$b" "$b"; done
for t in $SYNC_THREADS; do report "t$t-fillsync" "fillsync threads=$t"; done
rm -rf "$BENCH_DIR/rocksdb" "$BENCH_DIR/kvengine"
