#!/usr/bin/env bash
# run.sh measures the grain state stores side by side and prints benchstat
# tables with a column per store.
#
#   bench/stores/run.sh     6 samples of 1 s of each benchmark
#
# Knobs, all optional: COUNT (samples), BENCHTIME (-benchtime), BENCH
# (regexp of benchmarks), OUT (directory for the results, default
# results/<UTC time>; it receives raw.txt and benchstat.txt). It starts
# PostgreSQL through .ci/postgres.sh (Debian, as root) and needs
# redis-server (apt-get install redis-server); the Redis servers are the
# benchmarks' own.
set -euo pipefail
cd "$(dirname "$0")"

: "${COUNT:=6}" "${BENCHTIME:=1s}" "${BENCH:=.}"
: "${OUT:=results/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
raw="$OUT/raw.txt"

eval "$(bash ../../.ci/postgres.sh)"
export PROTOGRAIN_POSTGRES_DSN

bin="$OUT/stores.test"
go test -c -o "$bin" .
trap 'rm -f "$bin"' EXIT

echo "# $(date -u +%FT%TZ) $(nproc) cores, $(go version), $(redis-server --version | cut -d' ' -f1-3), $(psql --version), uptime:$(uptime | sed 's/.*load/ load/')" >"$raw"
# One sample of every store at a time, COUNT times over, so that the
# machine's drift spreads over the stores rather than into one of them.
for _ in $(seq "$COUNT"); do
	"$bin" -test.run '^$' -test.bench "$BENCH" -test.benchtime "$BENCHTIME" -test.count 1 | tee -a "$raw"
done
go tool benchstat -col /store "$raw" | tee "$OUT/benchstat.txt"
echo "results in $(pwd)/$OUT"
