package cluster

import "testing"

// TestCallOptionsApply checks what each option sets, that nil options are
// skipped, and that applying options allocates nothing: a call made with
// options must not pay for them on the heap.
func TestCallOptionsApply(t *testing.T) {
	opts := []CallOption{WithoutRetry(), nil, WithCallID("client", 7), WithTurnOnCaller()}
	want := callConfig{noRetry: true, turnOnCaller: true, stamp: stamp{client: "client", seq: 7}}
	if got := applyCallOptions(opts); got != want {
		t.Fatalf("applyCallOptions = %+v, want %+v", got, want)
	}
	if got := applyCallOptions(nil); got != (callConfig{}) {
		t.Fatalf("applyCallOptions(nil) = %+v, want the zero config", got)
	}
	var cc callConfig
	if allocs := testing.AllocsPerRun(100, func() { cc = applyCallOptions(opts) }); allocs != 0 {
		t.Fatalf("applying %d options allocated %v times per call, want 0", len(opts), allocs)
	}
	if cc != want {
		t.Fatalf("config after the runs = %+v, want %+v", cc, want)
	}
}
