#!/bin/sh
# kvctl's bulk paths beside sqlite3's on a package index shaped like PyPI's (name, version,
# month, rank, summary; ROWS rows, 886,323 by default, with accents, tabs, backslashes and
# emoji in the summaries): import, count, export and a full scan, each timed, with peak
# memory, and the ratio kvctl/sqlite3 (lower is better; the issue's bar is 2.0). count,
# a few milliseconds, is the mean of 20 runs (RUNS_SHORT). Then the tables' size on disk
# with each codec (none, lz4, zstd) beside sqlite3's file.
#
#   scripts/compare-sqlite.sh                       # generated data, release kvctl
#   ROWS=100000 scripts/compare-sqlite.sh
#   INDEX=pypi.tsv scripts/compare-sqlite.sh        # a real index: name<TAB>version<TAB>month<TAB>rank<TAB>summary
#
# sqlite3 gets a table with the name as primary key (what a key-value store gives), loaded
# with .import in tab mode; kvctl gets the name as key and the other four fields, tab
# separated, as value (TSV, tabs in values escaped as \t), and JSON lines for a second import.
set -eu
ROWS=${ROWS:-886323}
DIR=${BENCH_DIR:-$(mktemp -d)}
KVCTL=${KVCTL:-.build/release/kvctl}
[ -x "$KVCTL" ] || swift build -c release --product kvctl >/dev/null
command -v sqlite3 >/dev/null || { echo "sqlite3 is missing (apt-get install -y sqlite3)"; exit 69; }
mkdir -p "$DIR"
rm -rf "$DIR/kv.db" "$DIR/kv2.db" "$DIR/index.sqlite"

if [ -n "${INDEX:-}" ]; then
    cp "$INDEX" "$DIR/index.tsv"
else
    awk -v rows="$ROWS" 'BEGIN {
        srand(7); split("café naïve façade résumé 🙂 über Ångström", words, " ");
        for (i = 1; i <= rows; i++) {
            name = sprintf("pkg-%07d-%s", int(rand() * 10000000), substr("abcdefghijklmnop", 1 + i % 9, 3 + i % 5));
            summary = "A library for " words[1 + i % 7] " things";
            if (i % 50 == 0) summary = summary " (see C:\\\\docs\\\\readme)";
            if (i % 97 == 0) summary = summary " with \"quotes\"";
            printf "%s\t%d.%d.%d\t2017-%02d\t%d\t%s\n", name, i % 9, i % 31, i % 7, 1 + i % 12, i, summary;
        }
    }' > "$DIR/index.tsv"
fi
# Names must be unique for a primary key: keep the first of each.
awk -F '\t' '!seen[$1]++' "$DIR/index.tsv" > "$DIR/unique.tsv"
ROWS=$(wc -l < "$DIR/unique.tsv")
# kvctl's TSV: key, then the rest with its tabs (and backslashes) in the text form.
sed 's/\\/\\\\/g' "$DIR/unique.tsv" | awk -F '\t' '{ printf "%s\t%s\\t%s\\t%s\\t%s\n", $1, $2, $3, $4, $5 }' > "$DIR/kv.tsv"
"$KVCTL" "$DIR/scratch.db" import --format tsv < "$DIR/kv.tsv" >/dev/null  # checks the file parses
"$KVCTL" "$DIR/scratch.db" export --format jsonl > "$DIR/kv.jsonl"
rm -rf "$DIR/scratch.db"

# One timed job: prints seconds and peak resident MiB.
timed() {
    /usr/bin/time -f "%e %M" -o "$DIR/time.out" sh -c "$1" >/dev/null
    awk '{ printf "%s %.0f", $1, $2 / 1024 }' "$DIR/time.out"
}

# A job too short for /usr/bin/time's 10 ms: the mean of RUNS runs (date's nanoseconds),
# and the peak memory of one.
timed_short() {
    runs=${RUNS_SHORT:-20}
    start=$(date +%s%N)
    i=0
    while [ $i -lt "$runs" ]; do sh -c "$1" >/dev/null; i=$((i + 1)); done
    end=$(date +%s%N)
    /usr/bin/time -f "%M" -o "$DIR/time.out" sh -c "$1" >/dev/null
    awk -v ns=$((end - start)) -v runs="$runs" '{ printf "%.4f %.0f", ns / runs / 1e9, $1 / 1024 }' "$DIR/time.out"
}

echo "rows: $ROWS  (data in $DIR)"
printf "%-16s %12s %10s %12s %10s %8s\n" job "kvctl s" "kvctl MiB" "sqlite3 s" "sqlite MiB" ratio
row() {
    set -- "$1" $2 $3
    printf "%-16s %12s %10s %12s %10s %8.2f\n" "$1" "$2" "$3" "$4" "$5" "$(echo "$2 $4" | awk '{ print ($2 > 0 ? $1 / $2 : 0) }')"
}
sq_import=$(timed "sqlite3 '$DIR/index.sqlite' 'create table pypi(name text primary key, version, month, rank, summary)' '.mode tabs' '.import $DIR/unique.tsv pypi'")
kv_import=$(timed "'$KVCTL' '$DIR/kv.db' import --format tsv < '$DIR/kv.tsv'")
row "import (tsv)" "$kv_import" "$sq_import"
kv_json=$(timed "'$KVCTL' '$DIR/kv2.db' import --format jsonl < '$DIR/kv.jsonl'")
row "import (jsonl)" "$kv_json" "$sq_import"
row "count" "$(timed_short "'$KVCTL' '$DIR/kv.db' count")" "$(timed_short "sqlite3 '$DIR/index.sqlite' 'select count(*) from pypi'")"
row "export (tsv)" "$(timed "'$KVCTL' '$DIR/kv.db' export --format tsv")" "$(timed "sqlite3 '$DIR/index.sqlite' '.mode tabs' 'select * from pypi order by name'")"
row "export (jsonl)" "$(timed "'$KVCTL' '$DIR/kv.db' export --format jsonl")" "$(timed "sqlite3 '$DIR/index.sqlite' '.mode json' 'select * from pypi order by name'")"
row "scan" "$(timed "'$KVCTL' '$DIR/kv.db' scan")" "$(timed "sqlite3 '$DIR/index.sqlite' '.mode tabs' 'select name, version from pypi order by name'")"
# Size on disk: the tables of an import with each codec beside sqlite3's file.
echo
printf "%-16s %12s %8s\n" "size on disk" bytes "vs sqlite"
sq_bytes=$(stat -c %s "$DIR/index.sqlite")
for codec in none lz4 zstd; do
    rm -rf "$DIR/size.db"
    "$KVCTL" "$DIR/size.db" import --format tsv --compression "$codec" < "$DIR/kv.tsv" >/dev/null
    bytes=$(cat "$DIR"/size.db/*.sst | wc -c)
    printf "%-16s %12s %8.2f\n" "kvctl $codec" "$bytes" "$(echo "$bytes $sq_bytes" | awk '{ print $1 / $2 }')"
done
rm -rf "$DIR/size.db"
printf "%-16s %12s %8.2f\n" "sqlite3" "$sq_bytes" 1
[ -n "${BENCH_DIR:-}" ] || rm -rf "$DIR"
