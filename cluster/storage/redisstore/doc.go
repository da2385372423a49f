// Package redisstore is a storage.Store in Redis, through a go-redis
// client, for clusters that keep their state where Dapr's actors keep
// theirs by default. It needs Redis 4.0 or newer (Lua scripts, and HSET
// with several fields in one command); its tests run Redis 7.0, on one
// server and on a Redis Cluster of three.
//
// Keys, each under Config.Prefix (DefaultPrefix) and a colon:
//
//	s:<kind> NUL <identity>   a hash per grain: "v" → its version, in decimal;
//	                          "e:<key>" → the value of entry key
//	r:<kind>                  a hash per kind: <identity> NUL <name> →
//	                          the reminder's due time and period
//
// Names cannot hold a NUL byte (storage.Key.Validate), so NUL separates
// them without ambiguity. A reminder's value is its due time and its
// period, in Unix nanoseconds and nanoseconds, each eight bytes big-endian,
// so that times round-trip exactly.
//
// A Commit is one Lua script on the grain's hash: it compares the stored
// version with the expected one and, only if they are equal, applies the
// changes and sets the new version. Redis runs a script alone, so two
// racing commits with the same expected version serialize: the second
// finds the version changed, writes nothing, and fails with
// storage.ErrConflict. CompleteReminder is a script too, a compare-and-set
// of the reminder's value. Each script touches one key, so the store works
// on a Redis Cluster as well (pass a cluster client in Config.Client).
//
// Durability is the server's: Redis acknowledges a write once it is in
// memory, and writes it to disk as its persistence settings say. For state
// that must survive a crash of the server, as a commit acknowledged by
// pgstore does, run Redis with the append-only file and appendfsync
// always; with everysec (Redis' default when the file is on) a crash may
// lose the last second of commits, and without persistence a restart
// loses everything. The store cannot check this: many hosted servers
// refuse CONFIG GET.
//
// A Commit or CompleteReminder that fails before it could reach the server
// (its context was done, no connection could be had) changed nothing, and
// its error wraps storage.ErrNotCommitted; one that fails after its script
// was sent (the connection broke, the context ended while it waited for
// the reply) may have taken effect, and its error does not.
//
// It must not import the cluster or runtime packages.
package redisstore
