// Package stategoldens calls the typed-state goldens of protoc-gen-grain
// (testdata/state, stateimport, manualflush, readonly and stateclash) the
// way a node does: kinds built by the generated New<Service>Kind, state
// allocated with the Kind's NewState, flushed per its Flush mode and per
// Method.ReadOnly, and read by grains through the generated <Service>StateOf
// accessors. It holds only tests, and a stand-in node with an in-memory
// cluster.State; the real node is tested with the cluster package.
//
// The goldens and these tests compile against the state contract of
// cluster/api.go (GrainContext.State, cluster.State, Kind.NewState,
// Kind.Flush, Method.ReadOnly). The other goldens are called by the tests of
// protoc-gen-grain itself.
//
// It must not import anything of protograin but cluster, cluster/state and
// the goldens.
package stategoldens
