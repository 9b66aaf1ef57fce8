#!/usr/bin/env bash
# A database opened thousands of times: CYCLES one-shot `kvctl D put` sessions (open, one
# put, close), every KILL_EVERY-th one killed with SIGKILL right after its put instead of
# closing, then a read of every key. Prints, at chosen cycles, the files in the directory
# and the wall time of that cycle's whole kvctl run (process start, open, put, close), as
# the median of the 9 cycles around it.
#
#   scripts/lifecycle.sh                  # 1000 cycles, a kill every 50th
#   CYCLES=200 KILL_EVERY=0 scripts/lifecycle.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CYCLES=${CYCLES:-1000}
KILL_EVERY=${KILL_EVERY:-50}
DIR=${LIFECYCLE_DIR:-bench-data/lifecycle}
make -s build >/dev/null
KVCTL=.build/release/kvctl

rm -rf "$DIR"
mkdir -p "$(dirname "$DIR")"
declare -a took
for i in $(seq 1 "$CYCLES"); do
  start=$(date +%s%N)
  if [ "$KILL_EVERY" -gt 0 ] && [ $((i % KILL_EVERY)) -eq 0 ]; then
    # The put is acknowledged (sync, "OK") before the kill; the next open must replay it.
    coproc SESSION { exec "$KVCTL" "$DIR" shell; }
    echo "put k$i v$i" >&"${SESSION[1]}"
    read -r -t 10 answer <&"${SESSION[0]}" || answer=none
    [ "$answer" = OK ] || { echo "cycle $i: the shell answered '$answer'" >&2; exit 1; }
    kill -9 "$SESSION_PID" 2>/dev/null || true
    wait "$SESSION_PID" 2>/dev/null || true
  else
    "$KVCTL" "$DIR" put "k$i" "v$i" >/dev/null
  fi
  took[$i]=$(( ($(date +%s%N) - start) / 1000 ))
done

median_around() { # cycle -> median microseconds of the 9 cycles around it
  local from=$(( $1 > 4 ? $1 - 4 : 1 )) to=$(( $1 + 4 < CYCLES ? $1 + 4 : CYCLES ))
  for j in $(seq "$from" "$to"); do echo "${took[$j]}"; done | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}
for cycle in 10 100 500 "$CYCLES"; do
  [ "$cycle" -le "$CYCLES" ] || continue
  echo "cycle $cycle: $(median_around "$cycle") us per kvctl put session"
done
echo "files after $CYCLES cycles: $(ls "$DIR" | wc -l) ($(ls "$DIR" | tr '\n' ' '))"
echo "directory bytes: $(du -sb "$DIR" | cut -f1)"
missing=0
for i in $(seq 1 "$CYCLES"); do
  [ "$("$KVCTL" "$DIR" get "k$i" 2>/dev/null)" = "v$i" ] || missing=$((missing + 1))
done
echo "keys missing: $missing of $CYCLES"
[ "$missing" -eq 0 ]
