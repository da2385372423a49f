// Package stores measures the grain state stores side by side, in one test
// binary: the commit of one small change to a grain, the load of a grain,
// and a grain call on a node whose grains commit their state after each
// call (with small replies, and with replies of 1 KiB, which the grain's
// exactly-once record keeps), from one goroutine and from sixteen, each on
// grains of its own.
// The durable stores make each commit durable as they promise: boltstore
// syncs its file, pgstore waits for PostgreSQL's commit (fsync on, its
// default), and redisstore runs on a server with appendfsync always; the
// Redis server without persistence and memstore show what the network and
// the store's own code cost without the disk.
//
// Everything lives in _test.go files, with a test that runs what the
// benchmarks run a few times on each store, so that a broken store or
// opener fails go test; run.sh starts what the stores need
// (PostgreSQL through .ci/postgres.sh, redis-server processes through
// redistest) and compares the stores with benchstat, and docs/benchmarks.md
// records the results.
package stores
