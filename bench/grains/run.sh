#!/usr/bin/env bash
# run.sh runs the grain benchmarks of this package on both peers (protograin
# and protoactor-go, in the same test binary, with a second process of that
# binary hosting the grains for the cross-node ones) and prints benchstat
# tables with the peers side by side, then one ratio per benchmark and unit.
#
#   bench/grains/run.sh            full run: -count 6, 1 s per sample,
#                                  100,000 activations, 100,000 and 1,000,000 idle grains
#   QUICK=1 bench/grains/run.sh    quick run: -count 2, 200 ms per sample,
#                                  20,000 activations, 100,000 idle grains
#
# Further knobs, all optional: COUNT (samples per benchmark), BENCHTIME
# (-benchtime of the call and one-way benchmarks), ACTIVATIONS (fresh
# identities per activation sample), IDLE (comma-separated idle grain
# counts), IDLE_COUNT (samples per idle count; default 2, 1 when quick),
# BENCH (regexp selecting among LocalCalls, LocalCallsDeadline,
# LocalCallsTurnOnCaller, RemoteCalls, OneWay, LoopbackFloor, Activation,
# IdleMemory), OUT (directory for the results, default
# bench/grains/results/<UTC time>). OUT receives raw.txt (the go test output),
# benchstat.txt, ratios.txt and paired.txt.
set -euo pipefail
cd "$(dirname "$0")"

if [[ -n "${QUICK:-}" ]]; then
	: "${COUNT:=2}" "${BENCHTIME:=200ms}" "${ACTIVATIONS:=20000}" "${IDLE:=100000}" "${IDLE_COUNT:=1}"
else
	: "${COUNT:=6}" "${BENCHTIME:=1s}" "${ACTIVATIONS:=100000}" "${IDLE:=100000,1000000}" "${IDLE_COUNT:=2}"
fi
: "${BENCH:=.}"
: "${OUT:=results/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
raw="$OUT/raw.txt"
bin="$OUT/grains.test"

# Build the test binary once: every phase, and the host processes it
# starts, run the same code, and compilation is part of no measurement.
go test -c -o "$bin" .
trap 'rm -f "$bin"' EXIT

{
	echo "# $(date -u +%FT%TZ) $(nproc) cores, $(go version), uptime:$(uptime | sed 's/.*load/ load/')"
	echo "# COUNT=$COUNT BENCHTIME=$BENCHTIME ACTIVATIONS=$ACTIVATIONS IDLE=$IDLE IDLE_COUNT=$IDLE_COUNT BENCH=$BENCH"
	# The runtime's knobs, when set, apply to both peers and both processes.
	echo "# GOMAXPROCS=${GOMAXPROCS:-default} GOGC=${GOGC:-default} GOMEMLIMIT=${GOMEMLIMIT:-default}"
} >"$raw"

# phase NAME COUNT ARGS... takes COUNT samples of benchmark NAME with ARGS,
# unless BENCH excludes it. Each sample is a run of its own, of both peers
# one after the other, so that the peers' samples alternate: this shared
# machine's speed drifts by a third within minutes, and -test.count
# COUNT would take all of protoactor-go's samples before protograin's,
# each peer in a phase of its own, so that the drift went into the ratio.
phase() {
	local name=$1 count=$2
	shift 2
	if [[ $name =~ $BENCH ]]; then
		for _ in $(seq "$count"); do
			"$bin" -test.run '^$' -test.bench "^Benchmark$name\$" -test.count 1 "$@" | tee -a "$raw"
		done
	fi
}
phase LocalCalls "$COUNT" -test.benchtime "$BENCHTIME"
phase LocalCallsDeadline "$COUNT" -test.benchtime "$BENCHTIME"
phase LocalCallsTurnOnCaller "$COUNT" -test.benchtime "$BENCHTIME"
phase RemoteCalls "$COUNT" -test.benchtime "$BENCHTIME"
phase OneWay "$COUNT" -test.benchtime "$BENCHTIME"
# The floor under cross-node calls: raw TCP and bare gRPC round trips.
phase LoopbackFloor "$COUNT" -test.benchtime "$BENCHTIME"
# One sample activates ACTIVATIONS fresh identities.
phase Activation "$COUNT" -test.benchtime "${ACTIVATIONS}x"
# One op activates the idle grains and measures; one op per sample.
phase IdleMemory "$IDLE_COUNT" -test.benchtime 1x -grains.idle "$IDLE"

# Columns: protoactor first, so that benchstat's "vs base" reads as
# protograin relative to protoactor-go.
cols='/impl@(protoactor protograin)'
go tool benchstat -col "$cols" "$raw" | tee "$OUT/benchstat.txt"
# The floor has no peers: its own table, one column.
if grep -q '^BenchmarkLoopbackFloor' "$raw"; then
	go tool benchstat -filter '.name:LoopbackFloor' "$raw" | tee "$OUT/floor.txt"
fi

# One line per benchmark and unit: how many times better protograin is, from
# the medians: protograin/protoactor for rates (units ending in /s),
# protoactor/protograin for everything else (times, latencies, bytes).
go tool benchstat -format csv -col "$cols" "$raw" 2>/dev/null | awk -F, '
	BEGIN { printf "%-44s %-14s %12s %12s  %s\n", "benchmark", "unit", "protoactor", "protograin", "protograin advantage" }
	$1 == "" && $2 != "" { unit = $2; next }
	$1 == "" || $1 == "geomean" || $2 == "" || $4 == "" { next }
	$2 + 0 != $2 { next }
	{
		better = (unit ~ /\/s$/) ? $4 : $2
		worse = (unit ~ /\/s$/) ? $2 : $4
		adv = (worse == 0) ? "n/a" : sprintf("%.2fx", better / worse)
		printf "%-44s %-14s %12.4g %12.4g  %s\n", $1, unit, $2, $4, adv
	}' | tee "$OUT/ratios.txt"
# The same ratios taken pair by pair (see paired.awk): a pair's two samples
# come from one run of the binary, a minute apart at most.
awk -f paired.awk "$raw" | tee "$OUT/paired.txt"
echo "results in $(cd "$OUT" && pwd)"
