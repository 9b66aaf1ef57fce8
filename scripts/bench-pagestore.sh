#!/usr/bin/env bash
# The page store beside fio, on the same file system and the same file, in one run.
#
#   scripts/bench-pagestore.sh            # 3 rounds of 10 s per workload and side
#   RUNS=5 SECONDS_PER_RUN=20 BENCH_DIR=/mnt/nvme scripts/bench-pagestore.sh
#
# Workloads: 4 KiB random reads at QD1 and QD32, 4 KiB write + fdatasync at QD1, in each
# ring mode (MODES, default "plain default sqpoll iopoll") beside fio's same mode. The two
# sides alternate within each round; the printed figures are medians of the rounds, as
# `MODE NAME pagestore=X fio=Y ratio=X/Y` (ops/s). A mode the kernel or device refuses
# shows "refused" on that side, and the page store's reason is printed.
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

fio_ops() { # rw depth extra... ; prints ops/s, or "refused(errno)" when fio's I/O fails
  local rw=$1 depth=$2; shift 2
  local line err
  line=$(fio --name=bench --filename="$FILE" --size=${SIZE_MB}M --ioengine=io_uring --direct=1 \
      --rw="$rw" --bs=4k --iodepth="$depth" --runtime="$SECONDS_PER_RUN" --time_based \
      --output-format=terse "$@" 2>/dev/null | tail -1)
  err=$(echo "$line" | cut -d';' -f5)
  # errno 95 (EOPNOTSUPP) and 22 (EINVAL): the mode refused; anything else an error.
  if [ -n "$err" ] && [ "$err" != 0 ]; then
    case $err in 95|22) echo "refused(errno$err)" ;; *) echo "error(errno$err)" ;; esac
    return
  fi
  if [ "$rw" = randread ]; then echo "$line" | cut -d';' -f8; else echo "$line" | cut -d';' -f49; fi
}

pagestore_ops() { # workload depth driver ring-mode ; prints ops/s, or "refused" when the store refuses the mode
  local out status=0
  out=$("$KVCTL" pagestore bench --file "$FILE" --size-mb "$SIZE_MB" --workload "$1" --depth "$2" \
      --driver "$3" --ring-mode "$4" --seconds "$SECONDS_PER_RUN" 2>/dev/null) || status=$?
  if [ "$status" = 69 ]; then
    echo "$out" | sed -n 's/.*refused: //p' | head -1 > "$REFUSALS/$4"
    echo refused; return
  elif [ "$status" != 0 ]; then
    echo "error(exit$status)"; return
  fi
  echo "$out" | sed -n 's/.*ops\/s=\([0-9]*\).*/\1/p'
}

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "# page store vs fio: $RUNS rounds x ${SECONDS_PER_RUN}s, file $FILE (${SIZE_MB} MiB), $(uname -r)"
report() { # name pagestore-figures fio-figures
  local p f ratio
  p=$(echo "$2" | median); f=$(echo "$3" | median)
  case "$p$f" in
    *refused*|*error*) ratio=- ;;
    *) ratio=$(awk -v p="$p" -v f="$f" 'BEGIN {printf "%.2f", p / f}') ;;
  esac
  echo "$1 pagestore=$p fio=$f ratio=$ratio   (runs: pagestore $2; fio $3)"
}

# Each ring mode beside fio's same mode. The page store always has registered files and
# fixed buffers; "plain" is that and nothing else, beside fio with --registerfiles
# --fixedbufs; "default" adds what the library turns on by default (the ring thread's
# ring fd registered; fio has no such switch, so its side is the same as plain's).
# SQPOLL works on the ring thread's ring (the pipelined driver) and IOPOLL on blocking
# callers' rings (the threads driver); fio's --sqthread_poll and --hipri are their peers.
# IOPOLL takes no fdatasync, so write+fdatasync is not run in it.
MODES=${MODES:-plain default sqpoll iopoll}
declare -A P F
REFUSALS=$(mktemp -d)
trap 'rm -rf "$REFUSALS"' EXIT
FIO_BASE="--registerfiles --fixedbufs"
for round in $(seq "$RUNS"); do
  for mode in $MODES; do
    case $mode in
      plain|default|ringfd) fio_extra=$FIO_BASE; driver=pipelined ;;
      sqpoll) fio_extra="$FIO_BASE --sqthread_poll"; driver=pipelined ;;
      iopoll) fio_extra="$FIO_BASE --hipri"; driver=threads ;;
      *) echo "unknown mode '$mode' in MODES (plain, default, ringfd, sqpoll, iopoll)"; exit 64 ;;
    esac
    P[$mode-qd1]+="$(pagestore_ops randread 1 $driver $mode) ";   F[$mode-qd1]+="$(fio_ops randread 1 $fio_extra) "
    P[$mode-qd32]+="$(pagestore_ops randread 32 $driver $mode) "; F[$mode-qd32]+="$(fio_ops randread 32 $fio_extra) "
    if [ "$mode" != iopoll ]; then
      P[$mode-sync]+="$(pagestore_ops writesync 1 pipelined $mode) "; F[$mode-sync]+="$(fio_ops randwrite 1 $fio_extra --fdatasync=1) "
    fi
  done
  P[blocking]+="$(pagestore_ops randread 1 threads default) "
done
for mode in $MODES; do
  report "$mode randread-4k-qd1" "${P[$mode-qd1]}" "${F[$mode-qd1]}"
  report "$mode randread-4k-qd32" "${P[$mode-qd32]}" "${F[$mode-qd32]}"
  if [ "$mode" != iopoll ]; then report "$mode write-fdatasync-4k-qd1" "${P[$mode-sync]}" "${F[$mode-sync]}"; fi
  if [ -s "$REFUSALS/$mode" ]; then echo "$mode refused by the page store: $(cat "$REFUSALS/$mode")"; fi
done
first=${MODES%% *}
report "default randread-4k-qd1-blocking-caller" "${P[blocking]}" "${F[$first-qd1]}"
