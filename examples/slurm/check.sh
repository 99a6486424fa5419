#!/bin/bash
# Runs the job-array template (sweep.sbatch) on a running SLURM cluster and checks that the
# merged shard databases hold exactly the points, with the same metrics, as one unsharded
# run of the same sweep on this machine:
#
#   bash examples/slurm/local-cluster.sh      # or any cluster where sbatch works
#   bash examples/slurm/check.sh [SWEEP [SHARDS]]   # default configs/sweeps/t1-sweep.toml, 2
#
# MIM (default target/release/mim, or $CARGO_TARGET_DIR/release/mim) is the binary; it must be
# reachable at the same path from the compute nodes. Work goes to a fresh folder under /tmp
# (kept, and named at the end). Exit 0: identical; 1: a job failed or the results differ.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
sweep=$(realpath "${1:-configs/sweeps/t1-sweep.toml}")
shards=${2:-2}
mim=${MIM:-${CARGO_TARGET_DIR:-target}/release/mim}
mim=$(realpath "$mim")
say() { echo "slurm-check: $*" >&2; }

[ -x "$mim" ] || { say "no mim binary at $mim (cargo build --release first)"; exit 1; }
command -v sbatch >/dev/null || { say "sbatch not found: start a cluster first"; exit 1; }
work=$(mktemp -d /tmp/mim-slurm-check.XXXX)
cd "$work"

say "submitting $shards array tasks of $(basename "$sweep") from $work"
sbatch --wait --quiet --export="ALL,MIM=$mim" --array="0-$((shards - 1))" \
    --cpus-per-task=1 --chdir="$work" "$repo/examples/slurm/sweep.sbatch" "$sweep" ||
    { say "a job failed:"; tail -n 5 mim-sweep-*.log >&2; exit 1; }
"$mim" results merge results.sqlite results-*.sqlite
"$mim" sweep "$sweep" --jobs 1 --db single.sqlite --out single-points --quiet

# Everything but the wall-clock columns must match, row for row (rows sorted by key).
metrics() {
    "$mim" results export "$1" --csv "$2"
    python3 - "$2" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
skip = {c for c in rows[0] if c == "created_at" or c.endswith("_seconds")}
for r in sorted(rows, key=lambda r: r["key"]):
    print(",".join(f"{c}={v}" for c, v in r.items() if c not in skip))
PY
}
metrics results.sqlite merged.csv > merged.txt
metrics single.sqlite single.csv > single.txt
n=$(wc -l < single.txt)
if cmp -s merged.txt single.txt; then
    say "OK: $n points from $shards SLURM array tasks, merged, equal the unsharded run ($work)"
else
    say "DIFFERENT: merged shards vs unsharded run ($work):"
    diff merged.txt single.txt | head -n 10 >&2
    exit 1
fi
