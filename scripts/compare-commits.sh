#!/usr/bin/env bash
# Runs `kvctl bench` for two commits of this repository, interleaved round by round on the
# same machine, and prints each workload's median ops/s and the ratio new/old: the check
# that a change (a refactor, say) costs nothing. Both sides are plain release builds (a
# build with -enable-testing, as the release test build is, runs measurably slower).
#
#   scripts/compare-commits.sh OLD [NEW]      (NEW defaults to the working tree)
#   ROUNDS=5 NUM=1000000 READS=100000 scripts/compare-commits.sh f03e6ea
#   BENCHMARKS=fillrandom,readtocache,readrandom,seekrandom,readseq SYNC=0 scripts/compare-commits.sh HEAD
#     (reads from the cache: readtocache fills it first; SYNC=0 skips fillsync)
set -euo pipefail
old=${1:?usage: scripts/compare-commits.sh OLD [NEW]}
new=${2:-}
rounds=${ROUNDS:-3}
num=${NUM:-1000000}
reads=${READS:-100000}
benchmarks=${BENCHMARKS:-fillseq,fillrandom,overwrite,readrandom,readseq,seekrandom}
sync=${SYNC:-1}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$work/old" >/dev/null 2>&1 || true; [ -n "$new" ] && git -C "$root" worktree remove --force "$work/new" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

build() {  # directory
    (cd "$1" && swift build -c release --product kvctl >/dev/null 2>&1) || { echo "build failed in $1" >&2; exit 1; }
}
git -C "$root" worktree add --detach "$work/old" "$old" >/dev/null 2>&1
build "$work/old"
if [ -n "$new" ]; then
    git -C "$root" worktree add --detach "$work/new" "$new" >/dev/null 2>&1
    build "$work/new"
    newbin=$work/new/.build/release/kvctl
else
    build "$root"
    newbin=$root/.build/release/kvctl
fi
oldbin=$work/old/.build/release/kvctl
db=$work/db
results=$work/results
for round in $(seq 1 "$rounds"); do
    for side in new old; do
        bin=$newbin; [ "$side" = old ] && bin=$oldbin
        rm -rf "$db"
        "$bin" bench --db "$db" --num "$num" --reads "$reads" \
            --benchmarks "$benchmarks" 2>&1 \
            | awk -v side="$side" '/ops\/sec/ { print side, $1, $5 }' >> "$results"
        rm -rf "$db"
        [ "$sync" = 1 ] || continue
        "$bin" bench --db "$db" --benchmarks fillsync --threads 4 --num 2000000 2>&1 \
            | awk -v side="$side" '/ops\/sec/ { print side, "fillsync-4", $5 }' >> "$results"
    done
done
echo "kvctl bench, $rounds interleaved rounds; old = $old, new = ${new:-working tree}; ops/s, medians"
python3 - "$results" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(lambda: collections.defaultdict(list))
order = []
for line in open(sys.argv[1]):
    side, bench, value = line.split()
    if bench not in order: order.append(bench)
    runs[bench][side].append(int(value))
print(f"{'workload':12} {'old':>11} {'new':>11} {'new/old':>8}   runs old | new")
for bench in order:
    o, n = statistics.median(runs[bench]['old']), statistics.median(runs[bench]['new'])
    print(f"{bench:12} {o:11,.0f} {n:11,.0f} {n / o:8.2f}   {runs[bench]['old']} | {runs[bench]['new']}")
PY
