#!/usr/bin/env bash
# The page store beside fio, on the same file system and the same file, in one run.
#
#   scripts/bench-pagestore.sh            # 3 rounds of 10 s per workload and side
#   RUNS=5 SECONDS_PER_RUN=20 BENCH_DIR=/mnt/nvme scripts/bench-pagestore.sh
#
# Workloads: 4 KiB random reads at QD1 and QD32, 4 KiB write + fdatasync at QD1.
# The two sides alternate within each round; the printed figures are medians of the
# rounds, as `NAME pagestore=X fio=Y ratio=X/Y` (ops/s).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
BENCH_DIR=${BENCH_DIR:-bench-data}
SIZE_MB=${SIZE_MB:-1024}
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)

command -v fio >/dev/null || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq fio; }
make -s build >/dev/null
KVCTL=.build/release/kvctl

mkdir -p "$BENCH_DIR"
FILE="$BENCH_DIR/pagestore-bench.dat"
if [ ! -f "$FILE" ] || [ "$(stat -c %s "$FILE")" -lt $((SIZE_MB << 20)) ]; then
  fio --name=layout --filename="$FILE" --size=${SIZE_MB}M --rw=write --bs=1M --direct=1 \
      --ioengine=io_uring --output-format=terse >/dev/null
fi

fio_ops() { # rw depth extra... ; prints ops/s
  local rw=$1 depth=$2; shift 2
  local line
  line=$(fio --name=bench --filename="$FILE" --size=${SIZE_MB}M --ioengine=io_uring --direct=1 \
      --rw="$rw" --bs=4k --iodepth="$depth" --runtime="$SECONDS_PER_RUN" --time_based \
      --output-format=terse "$@" 2>/dev/null)
  if [ "$rw" = randread ]; then echo "$line" | cut -d';' -f8; else echo "$line" | cut -d';' -f49; fi
}

pagestore_ops() { # workload depth driver ; prints ops/s
  "$KVCTL" pagestore bench --file "$FILE" --size-mb "$SIZE_MB" --workload "$1" --depth "$2" \
      --driver "$3" --seconds "$SECONDS_PER_RUN" | sed -n 's/.*ops\/s=\([0-9]*\).*/\1/p'
}

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "# page store vs fio: $RUNS rounds x ${SECONDS_PER_RUN}s, file $FILE (${SIZE_MB} MiB), $(uname -r)"
report() { # name pagestore-figures fio-figures
  local p f
  p=$(echo "$2" | median); f=$(echo "$3" | median)
  echo "$1 pagestore=$p fio=$f ratio=$(awk -v p="$p" -v f="$f" 'BEGIN {printf "%.2f", p / f}')   (runs: pagestore $2; fio $3)"
}

declare -A P F
for round in $(seq "$RUNS"); do
  P[qd1]+="$(pagestore_ops randread 1 pipelined) ";   F[qd1]+="$(fio_ops randread 1) "
  P[qd32]+="$(pagestore_ops randread 32 pipelined) "; F[qd32]+="$(fio_ops randread 32) "
  P[sync]+="$(pagestore_ops writesync 1 pipelined) "; F[sync]+="$(fio_ops randwrite 1 --fdatasync=1) "
  P[blocking]+="$(pagestore_ops randread 1 threads) "
done
report randread-4k-qd1 "${P[qd1]}" "${F[qd1]}"
report randread-4k-qd32 "${P[qd32]}" "${F[qd32]}"
report write-fdatasync-4k-qd1 "${P[sync]}" "${F[sync]}"
report randread-4k-qd1-blocking-caller "${P[blocking]}" "${F[qd1]}"
