#!/usr/bin/env bash
# A database of many small tables: fillrandom with compaction cutting tables at 16 KiB
# until the directory holds at least MIN_TABLES tables, then, each in a new kvctl process
# (an open of all of them): reads and seeks, a full compaction, `kvctl check` of every
# table and a count. The page store keeps its default 1024 registered file slots, so the
# table cache (Options.maxOpenTables) is what lets this work.
#
#   scripts/many-tables.sh                       # 4.8M keys: about 20,000 tables
#   NUM=400000 MIN_TABLES=2000 scripts/many-tables.sh
set -euo pipefail
cd "$(dirname "$0")/.."

NUM=${NUM:-4800000}
MIN_TABLES=${MIN_TABLES:-20000}
DIR=${MANY_TABLES_DIR:-bench-data/many-tables}
make -s build >/dev/null
KVCTL=.build/release/kvctl
FLAGS=(--db="$DIR" --num="$NUM" --value_size=100 --write_buffer_size=4194304 --target_file_size_base=16384)

tables() { ls "$DIR" | grep -c '\.sst$' || true; }
step() { # name command... -> runs it, prints its wall time
  local name=$1 start
  shift
  start=$(date +%s%N)
  "$@"
  echo "== $name: $(( ($(date +%s%N) - start) / 1000000 )) ms"
}

rm -rf "$DIR"
mkdir -p "$(dirname "$DIR")"
step fillrandom "$KVCTL" bench "${FLAGS[@]}" --benchmarks=fillrandom,stats
echo "tables after the fill: $(tables)"
step "reopen, readrandom, seekrandom" "$KVCTL" bench "${FLAGS[@]}" --use_existing_db=1 --reads=20000 --benchmarks=readrandom,seekrandom,stats
step "reopen, compact" "$KVCTL" bench "${FLAGS[@]}" --use_existing_db=1 --benchmarks=compact,stats
count=$(tables)
echo "tables after the compaction: $count"
check_quietly() { "$KVCTL" "$DIR" check >/dev/null; }
step "reopen, check every table" check_quietly
step "reopen, count" "$KVCTL" "$DIR" count
step "reopen, readrandom" "$KVCTL" bench "${FLAGS[@]}" --use_existing_db=1 --reads=20000 --benchmarks=readrandom,stats
if [ "$count" -lt "$MIN_TABLES" ]; then
  echo "only $count tables (wanted $MIN_TABLES): raise NUM" >&2
  exit 1
fi
echo "many-tables: $count tables, 1024 registered file slots: OK"
