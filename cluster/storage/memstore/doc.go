// Package memstore is an in-memory storage.Store, for unit tests of grains
// and of code built on package state. It keeps nothing across processes. A
// cluster node whose Config.Store is nil uses one of its own, closed with the
// node; nodes in one process that should share state are given the same
// memstore value.
// It passes the same conformance suite (storagetest) as the durable stores,
// so a test against it exercises the same rules: versions, conflicts,
// all-or-nothing commits, reminders.
//
// It must not import the cluster or runtime packages.
package memstore
