#!/usr/bin/env bash
# run.sh runs every benchmark of this module on every peer (protograin's
# runtime and protoactor-go, in the same test binary) and prints benchstat
# tables with the peers side by side, followed by one ratio per benchmark.
#
#   bench/run.sh            full run: 6 samples, 1,000,000 idle actors
#   QUICK=1 bench/run.sh    quick run: 2 samples, shorter runs, 100,000 idle actors
#
# Further knobs, all optional: COUNT (samples per benchmark), BENCHTIME
# (-benchtime of the throughput benchmarks), ACTORS (idle actors per peer),
# BENCH (regexp of benchmarks to run), OUT (directory for the results,
# default bench/results/<UTC time>). OUT receives raw.txt (the go test
# output), benchstat.txt and ratios.txt.
set -euo pipefail
cd "$(dirname "$0")"

if [[ -n "${QUICK:-}" ]]; then
	: "${COUNT:=2}" "${BENCHTIME:=300ms}" "${ACTORS:=100000}"
else
	: "${COUNT:=6}" "${BENCHTIME:=1s}" "${ACTORS:=1000000}"
fi
: "${BENCH:=.}"
: "${OUT:=results/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
raw="$OUT/raw.txt"

# Build the test binary once, so both runs below measure the same code and
# compilation is not part of any run.
go test -c -o "$OUT/bench.test" .

{
	echo "# $(date -u +%FT%TZ) $(nproc) cores, $(go version), uptime:$(uptime | sed 's/.*load/ load/')"
	echo "# COUNT=$COUNT BENCHTIME=$BENCHTIME ACTORS=$ACTORS BENCH=$BENCH"
} >"$raw"

# Each sample is a run of the binary of its own, of both peers one after
# the other, so that the peers' samples alternate: -test.count COUNT would
# take all of one peer's samples of a benchmark before the other's, and
# this shared machine's speed drifts by a third within minutes.
for _ in $(seq "$COUNT"); do
	# Throughput benchmarks: -benchtime decides how many ops each sample has.
	"$OUT/bench.test" -test.run '^$' -test.bench "$BENCH" -test.skip 'IdleMemory' \
		-test.count 1 -test.benchtime "$BENCHTIME" | tee -a "$raw"
done
for _ in $(seq "$COUNT"); do
	# Idle memory: one op spawns ACTORS actors, so one op per sample is enough.
	"$OUT/bench.test" -test.run '^$' -test.bench "$BENCH" -test.skip 'PingPong|Request|SpawnStop' \
		-test.count 1 -test.benchtime 1x -actors "$ACTORS" | tee -a "$raw"
done
rm "$OUT/bench.test"

# Columns: protoactor first, so benchstat's "vs base" reads as protograin
# relative to protoactor-go.
cols='/impl@(protoactor protograin)'
go tool benchstat -col "$cols" "$raw" | tee "$OUT/benchstat.txt"

# One line per benchmark and unit: how many times better protograin is
# (higher is better for */s units, lower for the others), from the medians.
go tool benchstat -format csv -col "$cols" "$raw" 2>/dev/null | awk -F, '
	BEGIN { printf "%-28s %-10s %-12s %-12s %s\n", "benchmark", "unit", "protoactor", "protograin", "advantage (>1: protograin better)" }
	$2 == "protoactor" { next }
	$1 == "" && $2 != "" { unit = $2; next }
	$1 == "" || $1 == "geomean" || $2 == "" || $4 == "" { next }
	{
		if (unit ~ /\/s$/) { num = $4; den = $2 } else { num = $2; den = $4 }
		if (num == den) adv = "1.00x"
		else if (num == 0 || den == 0) adv = "n/a (one side is 0)"
		else adv = sprintf("%.2fx", num / den)
		printf "%-28s %-10s %-12.4g %-12.4g %s\n", $1, unit, $2, $4, adv
	}' | tee "$OUT/ratios.txt"
echo "results in $(cd "$OUT" && pwd)"
