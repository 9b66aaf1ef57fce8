#!/usr/bin/env bash
# KVEngine (`kvctl bench`) beside LevelDB, RocksDB and LMDB (scripts/peers/peerbench.c over
# their C libraries): the same workloads, flags and report lines, the engines interleaved
# within each round.
#
#   scripts/compare-peers.sh                          # 1M keys, 3 rounds
#   NUM=10000000 READS=1000000 scripts/compare-peers.sh
#   BENCHMARKS=fillseq,readrandom,readseq RUNS=5 scripts/compare-peers.sh
#   BENCHMARKS=fillrandom,overwrite,readrandom,seekrandom scripts/compare-peers.sh
#   CACHE_SIZE=8388608 scripts/compare-peers.sh      # kvctl's --cache_size (default: its own)
#   KEEP=1 scripts/compare-peers.sh                  # keep the databases afterwards
#
# Each round runs, one invocation per engine, `kvctl bench` and `peerbench --engine=E` for
# E in leveldb rocksdb lmdb with the same flags (keys 16 bytes, values 100 bytes, no
# compression, every peer at its library's defaults otherwise: see peerbench.c). The
# first benchmark must be a fill (fillseq, fillrandom or fillsync): it leaves the database
# the others use. Each round starts with the next engine in turn, so that none always
# runs first (or right after the same neighbour).
#
# Prints, per workload, each engine's median ops/s over RUNS rounds, KVEngine's ratio to
# the better of LevelDB and RocksDB and to LMDB, each run's figures, and each database's
# size on disk (du) when its invocation ends, i.e. what the fill left (the read
# benchmarks add nothing; an LSM's background compaction may have shrunk it meanwhile).
# The databases live under BENCH_DIR (default ./bench-data), one file system for all,
# one directory per engine; they are removed at the end unless KEEP=1.
#
# Durable commits at several writer counts (group commit):
#
#   SYNC_THREADS="1 4 16 64" scripts/compare-peers.sh                 # after the workloads
#   BENCHMARKS=none SYNC_THREADS="1 4 16 64" scripts/compare-peers.sh # only those
#
# runs, in each round after BENCHMARKS, fillsync with --threads=T for each T, SYNC_WRITES
# (1000) durable puts per writer, reported as fillsync-T; with the ops/s table comes one
# of commit latency (p50 and p99, microseconds, medians over rounds) for every workload
# that reports it (kvctl from an HDR histogram, peerbench from all samples sorted).
#
# Other knobs: RUNS (3), READS (NUM), THREADS (1), WRITES (fillsync's --writes; default
# NUM/1000), SEED (kvctl's default 301).
set -euo pipefail
cd "$(dirname "$0")/.."

NUM=${NUM:-1000000}
RUNS=${RUNS:-3}
READS=${READS:-$NUM}
THREADS=${THREADS:-1}
BENCHMARKS=${BENCHMARKS:-fillrandom,readrandom,seekrandom,readseq}
BENCH_DIR=${BENCH_DIR:-bench-data}
ENGINES=(kvengine leveldb rocksdb lmdb)
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)

SYNC_THREADS=${SYNC_THREADS:-}
SYNC_WRITES=${SYNC_WRITES:-1000}
case ",$BENCHMARKS" in
  ,none) [ -n "$SYNC_THREADS" ] || { echo "compare-peers: BENCHMARKS=none needs SYNC_THREADS" >&2; exit 2; } ;;
  ,fillseq,* | ,fillrandom,* | ,fillsync,* | ,fillseq | ,fillrandom | ,fillsync) ;;
  *) echo "compare-peers: BENCHMARKS must start with a fill (fillseq, fillrandom or fillsync): $BENCHMARKS" >&2; exit 2 ;;
esac
for b in ${BENCHMARKS//,/ }; do
  case $b in
    none) ;;
    fillseq | fillrandom | overwrite | fillsync | readrandom | readseq | seekrandom) ;;
    *) echo "compare-peers: '$b' is not one of fillseq fillrandom overwrite fillsync readrandom readseq seekrandom" >&2; exit 2 ;;
  esac
done

# The peers' C libraries and headers.
for header in leveldb/c.h rocksdb/c.h lmdb.h; do
  if [ ! -e "/usr/include/$header" ]; then
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libleveldb-dev librocksdb-dev liblmdb-dev
    break
  fi
done
# kvctl: the build's own Debian packages (make deps), then the release build.
make -s deps
${SWIFT:-swift} build -c release --product kvctl
KVCTL=.build/release/kvctl
PEER=.build/peerbench
if [ ! -x "$PEER" ] || [ scripts/peers/peerbench.c -nt "$PEER" ]; then
  mkdir -p .build
  cc -O2 -Wall -Wextra -o "$PEER" scripts/peers/peerbench.c -lleveldb -lrocksdb -llmdb -lpthread
fi

mkdir -p "$BENCH_DIR"
results=$(mktemp)
cleanup() {
  rm -f "$results"
  if [ "${KEEP:-0}" != 1 ]; then
    for engine in "${ENGINES[@]}"; do rm -rf "${BENCH_DIR:?}/peers-$engine"; done
    rmdir "$BENCH_DIR" 2>/dev/null || true
  fi
}
trap cleanup EXIT

FLAGS=(--num="$NUM" --reads="$READS" --value_size=100 --key_size=16 --threads="$THREADS" --benchmarks="$BENCHMARKS")
if [ -n "${WRITES:-}" ]; then FLAGS+=(--writes="$WRITES"); fi
if [ -n "${SEED:-}" ]; then FLAGS+=(--seed="$SEED"); fi
# kvctl only: the peers have no such flags and keep their libraries' caches. No engine
# gets compression (the peers' drivers turn theirs off; KVEngine's default is LZ4), unless
# COMPRESSION names kvctl's (none, lz4, zstd) for a run of its cost.
KVFLAGS=(--compression_type="${COMPRESSION:-none}")
if [ -n "${CACHE_SIZE:-}" ]; then KVFLAGS+=(--cache_size="$CACHE_SIZE"); fi

# One invocation: "ops ENGINE WORKLOAD OPS/S" per report line (a workload that runs again
# in the same invocation is WORKLOAD2 the second time; SUFFIX is appended to every name),
# "lat ENGINE WORKLOAD P50 P99" where a line reports latency, "version ENGINE TEXT" from
# the header line, then "size ENGINE BYTES" (only with the main FLAGS).
run() {
  local engine=$1 suffix=$2 db="$BENCH_DIR/peers-$1"
  shift 2
  local flags=("$@")
  echo "  $engine${suffix:+ ($suffix)}" >&2
  if [ "$engine" = kvengine ]; then
    "$KVCTL" bench --db="$db" "${flags[@]}" ${KVFLAGS[@]+"${KVFLAGS[@]}"}
  else
    "$PEER" --engine="$engine" --db="$db" "${flags[@]}"
  fi | awk -v e="$engine" -v suffix="$suffix" '
    NR == 1 && $1 == "peerbench" { line = $0; sub(/^peerbench /, "", line); sub(/: keys .*/, "", line); print "version", e, line }
    / ops\/sec / {
      n = $1; if (seen[n]++) n = n seen[n]; n = n suffix; print "ops", e, n, $5
      for (i = 1; i < NF; i++) { if ($i == "p50") p50 = $(i + 1); if ($i == "p99") p99 = $(i + 1) }
      if ($0 ~ /latency us/) print "lat", e, n, p50, p99
    }'
  if [ -z "$suffix" ]; then echo "size $engine $(du -s -B1 "$db" | cut -f1)"; fi
}

echo "# $RUNS rounds of: $BENCHMARKS; num=$NUM reads=$READS threads=$THREADS${CACHE_SIZE:+ kvctl cache_size=$CACHE_SIZE}" >&2
for round in $(seq 1 "$RUNS"); do
  echo "round $round/$RUNS" >&2
  if [ "$BENCHMARKS" != none ]; then
    for i in "${!ENGINES[@]}"; do
      run "${ENGINES[$(((i + round - 1) % ${#ENGINES[@]}))]}" "" "${FLAGS[@]}" >> "$results"
    done
  fi
  for writers in $SYNC_THREADS; do
    sync_flags=(--num="$NUM" --value_size=100 --key_size=16 --threads="$writers" --writes="$SYNC_WRITES" --benchmarks=fillsync)
    if [ -n "${SEED:-}" ]; then sync_flags+=(--seed="$SEED"); fi
    for i in "${!ENGINES[@]}"; do
      run "${ENGINES[$(((i + round - 1) % ${#ENGINES[@]}))]}" "-$writers" "${sync_flags[@]}" >> "$results"
    done
  done
done

echo
echo "# kvengine vs leveldb, rocksdb, lmdb: num=$NUM reads=$READS threads=$THREADS, $RUNS rounds, $(uname -r), $(date -u +%Y-%m-%d)"
awk -v benchmarks="$BENCHMARKS" '
  function median(list,   n, a, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    if (n == 0) return ""
    return n % 2 ? a[(n + 1) / 2] + 0 : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  function grouped(x,   s, sign) {  # 1234567 -> 1,234,567
    x = sprintf("%.0f", x); sign = ""
    if (substr(x, 1, 1) == "-") { sign = "-"; x = substr(x, 2) }
    s = ""
    while (length(x) > 3) { s = "," substr(x, length(x) - 2) s; x = substr(x, 1, length(x) - 3) }
    return sign x s
  }
  $1 == "version" { line = $0; sub(/^version [a-z]+ /, "", line); version[$2] = line; next }
  $1 == "ops" { if (!(($3) in known)) { known[$3] = 1; order[++workloads] = $3 }; runs[$3, $2] = runs[$3, $2] " " $4; next }
  $1 == "size" { sizes[$2] = sizes[$2] " " $3; next }
  $1 == "lat" { if (!(($3) in latKnown)) { latKnown[$3] = 1; latOrder[++latWorkloads] = $3 }; p50s[$3, $2] = p50s[$3, $2] " " $4; p99s[$3, $2] = p99s[$3, $2] " " $5; next }
  END {
    ne = split("kvengine leveldb rocksdb lmdb", engine, " ")
    printf "# peers: %s; %s; %s\n", version["leveldb"], version["rocksdb"], version["lmdb"]
    printf "%-14s", "ops/s (median)"
    for (e = 1; e <= ne; e++) printf " %12s", engine[e]
    printf "   %-24s %8s\n", "kv/best(leveldb,rocksdb)", "kv/lmdb"
    for (w = 1; w <= workloads; w++) {
      name = order[w]
      printf "%-14s", name
      for (e = 1; e <= ne; e++) {
        m[engine[e]] = median(runs[name, engine[e]])
        printf " %12s", m[engine[e]] == "" ? "-" : grouped(m[engine[e]])
      }
      best = "leveldb"; if (m["rocksdb"] != "" && (m["leveldb"] == "" || m["rocksdb"] + 0 > m["leveldb"] + 0)) best = "rocksdb"
      kv = m["kvengine"]
      ratio = kv != "" && m[best] + 0 > 0 ? sprintf("%.2f (%s)", kv / m[best], best) : "-"
      lmdb = kv != "" && m["lmdb"] + 0 > 0 ? sprintf("%.2f", kv / m["lmdb"]) : "-"
      printf "   %-24s %8s\n", ratio, lmdb
    }
    printf "%-14s", "MiB on disk"
    for (e = 1; e <= ne; e++) { s = median(sizes[engine[e]]); printf " %12s", s == "" ? "-" : sprintf("%.1f", s / 1048576) }
    printf "   (du after each run, median)\n"
    if (latWorkloads > 0) {
      print ""
      printf "%-14s", "latency us"
      for (e = 1; e <= ne; e++) printf " %12s", engine[e]
      printf "   %s\n", "kv p99 / best peer p99 (lower is better)"
      for (w = 1; w <= latWorkloads; w++) {
        name = latOrder[w]
        printf "%-14s", name
        bestp99 = ""
        for (e = 1; e <= ne; e++) {
          a = median(p50s[name, engine[e]]); b = median(p99s[name, engine[e]]); q99[engine[e]] = b
          printf " %12s", a == "" ? "-" : sprintf("%.0f/%.0f", a, b)
          if (e > 1 && b != "" && (bestp99 == "" || b + 0 < bestp99 + 0)) { bestp99 = b; bestname = engine[e] }
        }
        ratio = (q99["kvengine"] != "" && bestp99 + 0 > 0) ? sprintf("%.2f (%s)", q99["kvengine"] / bestp99, bestname) : "-"
        printf "   %s\n", ratio
      }
      print "(p50/p99 per engine, medians over rounds)"
    }
    print ""
    print "runs (ops/s, in round order):"
    for (w = 1; w <= workloads; w++)
      for (e = 1; e <= ne; e++)
        printf "  %-14s %-9s%s\n", e == 1 ? order[w] : "", engine[e], runs[order[w], engine[e]]
  }' "$results"
