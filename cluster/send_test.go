package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protograin/protograin/cluster/storage/memstore"
)

// The one-way test kind: a grain that records the values it gets, by node
// and identity, so that tests can check what arrived, where, how often and
// in which order.
const (
	recorderKind  = "test.Recorder"
	methodRecord  = "/test.Recorder/Record"  // Int64Value v → Empty; -1 panics, -2 fails, other values are recorded
	methodForward = "/test.Recorder/Forward" // StringValue "identity" → sends Record(100) one-way to identity and to itself
	methodCount   = "/test.Recorder/Count"   // Empty → Int64Value: how many values this identity recorded here
	// Deadline: Empty → Empty; records 1 if ctx has a deadline within the
	// node's DefaultCallTimeout (waitTimeout in tests) and no error, else 0.
	methodDeadline = "/test.Recorder/Deadline"
	// Probe: Empty → Empty; records which of the probe* checks of its
	// GrainContext passed, as a bit set.
	methodProbe = "/test.Recorder/Probe"
	// Poll: Empty → Empty; asks only ctx.Err, until it is not nil or for
	// at most waitTimeout, and records 1 if it ended with
	// context.DeadlineExceeded, else 0.
	methodPoll = "/test.Recorder/Poll"
)

// The checks the Probe method makes of the GrainContext it gets.
const (
	probeNames      = 1 << iota // Kind and Identity are the grain's
	probeCall                   // Invoke calls another grain
	probeReentrant              // Invoke fails with ErrReentrant for a call to the grain itself
	probeReminders              // RegisterReminder takes it as a node's GrainContext
	probeNoDeadline             // no deadline, no error
	probeDeadline               // a deadline within DefaultCallTimeout (waitTimeout), not ended

	probeAll = probeNames | probeCall | probeReentrant | probeReminders
)

// recorder observes one node's recorder grains.
type recorder struct {
	mu   sync.Mutex
	got  map[string][]int64 // by identity, in arrival order
	news map[string]int     // activations by identity
}

func newRecorder() *recorder {
	return &recorder{got: map[string][]int64{}, news: map[string]int{}}
}

// add records v for identity.
func (r *recorder) add(identity string, v int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got[identity] = append(r.got[identity], v)
}

func (r *recorder) values(identity string) []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got[identity])
}

func (r *recorder) activations(identity string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.news[identity]
}

func newRecorderKind(r *recorder, idle time.Duration) *Kind {
	record := func(_ any, ctx GrainContext, req proto.Message) (proto.Message, error) {
		switch v := req.(*wrapperspb.Int64Value).GetValue(); v {
		case -1:
			panic("recorder: told to panic")
		case -2:
			return nil, errors.New("recorder: told to fail")
		default:
			r.add(ctx.Identity(), v)
		}
		return &emptypb.Empty{}, nil
	}
	forward := func(_ any, ctx GrainContext, req proto.Message) (proto.Message, error) {
		for _, to := range []string{req.(*wrapperspb.StringValue).GetValue(), ctx.Identity()} {
			if err := ctx.(Sender).Send(ctx, recordCall(to, 100)); err != nil {
				return nil, err
			}
		}
		return &emptypb.Empty{}, nil
	}
	count := func(_ any, ctx GrainContext, _ proto.Message) (proto.Message, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		return wrapperspb.Int64(int64(len(r.got[ctx.Identity()]))), nil
	}
	deadline := func(_ any, ctx GrainContext, _ proto.Message) (proto.Message, error) {
		var ok int64
		if d, has := ctx.Deadline(); has && time.Until(d) > 0 && time.Until(d) <= waitTimeout+waitTimeout/50 && ctx.Err() == nil {
			select {
			case <-ctx.Done():
			default:
				ok = 1
			}
		}
		r.add(ctx.Identity(), ok)
		return &emptypb.Empty{}, nil
	}
	probe := func(_ any, ctx GrainContext, _ proto.Message) (proto.Message, error) {
		var got int64
		if ctx.Kind() == recorderKind && strings.HasPrefix(ctx.Identity(), "probe") {
			got |= probeNames
		}
		count := Call{Kind: recorderKind, Identity: "probe-other", Method: methodCount, Request: &emptypb.Empty{},
			NewResponse: func() proto.Message { return new(wrapperspb.Int64Value) }}
		if _, err := ctx.Invoke(ctx, count); err == nil {
			got |= probeCall
		}
		count.Identity = ctx.Identity()
		if _, err := ctx.Invoke(ctx, count); errors.Is(err, ErrReentrant) {
			got |= probeReentrant
		}
		// The recorder is no ReminderReceiver: RegisterReminder gets past
		// the context and refuses the grain, saving nothing.
		if err := RegisterReminder(ctx, "r", time.Hour, 0); errors.Is(err, ErrBadRequest) && strings.Contains(err.Error(), "ReminderReceiver") {
			got |= probeReminders
		}
		if _, has := ctx.Deadline(); !has && ctx.Err() == nil {
			got |= probeNoDeadline
		}
		if d, has := ctx.Deadline(); has && time.Until(d) > 0 && time.Until(d) <= waitTimeout+waitTimeout/50 && ctx.Err() == nil {
			got |= probeDeadline
		}
		r.add(ctx.Identity(), got)
		return &emptypb.Empty{}, nil
	}
	poll := func(_ any, ctx GrainContext, _ proto.Message) (proto.Message, error) {
		var ok int64
		for start := time.Now(); time.Since(start) < waitTimeout; goruntime.Gosched() {
			if err := ctx.Err(); err != nil {
				if errors.Is(err, context.DeadlineExceeded) {
					ok = 1
				}
				break
			}
		}
		r.add(ctx.Identity(), ok)
		return &emptypb.Empty{}, nil
	}
	return &Kind{
		Name:        recorderKind,
		IdleTimeout: idle,
		New: func(identity string) any {
			r.mu.Lock()
			r.news[identity]++
			r.mu.Unlock()
			return struct{}{}
		},
		Methods: []Method{
			{Name: methodRecord, NewRequest: newInt64, Handle: record},
			{Name: methodForward, NewRequest: newString, Handle: forward},
			{Name: methodCount, NewRequest: func() proto.Message { return new(emptypb.Empty) }, Handle: count, ReadOnly: true},
			{Name: methodDeadline, NewRequest: func() proto.Message { return new(emptypb.Empty) }, Handle: deadline},
			{Name: methodProbe, NewRequest: func() proto.Message { return new(emptypb.Empty) }, Handle: probe},
			{Name: methodPoll, NewRequest: func() proto.Message { return new(emptypb.Empty) }, Handle: poll},
		},
	}
}

func recordCall(identity string, v int64) Call {
	return Call{Kind: recorderKind, Identity: identity, Method: methodRecord, Request: wrapperspb.Int64(v),
		NewResponse: func() proto.Message { return new(emptypb.Empty) }}
}

// logLines records the messages a node logs, to check what a one-way
// message that fails leaves behind: nobody else hears of it.
type logLines struct {
	debug bool // record every level, not only Warn and above
	mu    sync.Mutex
	lines []string // "message key=value ..."
}

// handler returns a slog.Handler that records into l the records at Warn
// and above (at every level with l.debug), and passes every record on to
// next.
func (l *logLines) handler(next slog.Handler) slog.Handler { return &lineHandler{l: l, next: next} }

// count returns how many recorded lines contain every one of parts.
func (l *logLines) count(parts ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}

// records reports whether l records a record at level.
func (l *logLines) records(level slog.Level) bool { return l.debug || level >= slog.LevelWarn }

type lineHandler struct {
	l     *logLines
	next  slog.Handler
	attrs []slog.Attr
}

func (h *lineHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.l.records(level) || h.next.Enabled(ctx, level)
}

func (h *lineHandler) Handle(ctx context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	add := func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	if h.l.records(r.Level) {
		h.l.mu.Lock()
		h.l.lines = append(h.l.lines, b.String())
		h.l.mu.Unlock()
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h *lineHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &lineHandler{l: h.l, next: h.next.WithAttrs(attrs), attrs: append(slices.Clone(h.attrs), attrs...)}
}

func (h *lineHandler) WithGroup(name string) slog.Handler {
	return &lineHandler{l: h.l, next: h.next.WithGroup(name), attrs: h.attrs}
}

// recorderCluster starts three nodes: the first two host the recorder
// kind, the third hosts nothing and only sends. It returns the nodes, the
// recorders and the log lines by node name.
func recorderCluster(t *testing.T, idle time.Duration, configure func(*Config)) ([]*Node, map[string]*recorder, map[string]*logLines) {
	t.Helper()
	return recorderClusterOf(t, 3, 2, idle, configure)
}

// recorderClusterOf is recorderCluster with size nodes, the first hosts of
// which host the recorder kind.
func recorderClusterOf(t *testing.T, size, hosts int, idle time.Duration, configure func(*Config)) ([]*Node, map[string]*recorder, map[string]*logLines) {
	t.Helper()
	recs := map[string]*recorder{}
	logs := map[string]*logLines{}
	var mu sync.Mutex // guards recs and i
	i := 0
	nodes := startCluster(t, size, func(name string) []*Kind {
		mu.Lock()
		defer mu.Unlock()
		recs[name] = newRecorder()
		i++
		if i > hosts {
			return nil
		}
		return []*Kind{newRecorderKind(recs[name], idle)}
	}, withLogs(logs, false, configure))
	return nodes, recs, logs
}

// withLogs returns a configure function for startCluster that records
// each node's log in logs, by node name (every level with debug, Warn and
// above otherwise), and then applies configure, if not nil.
func withLogs(logs map[string]*logLines, debug bool, configure func(*Config)) func(*Config) {
	var mu sync.Mutex
	return func(cfg *Config) {
		l := &logLines{debug: debug}
		mu.Lock()
		logs[cfg.NodeName] = l
		mu.Unlock()
		cfg.Logger = slog.New(l.handler(cfg.Logger.Handler()))
		if configure != nil {
			configure(cfg)
		}
	}
}

// recorderOwnedBy returns an identity that owner owns in every node's view.
func recorderOwnedBy(t *testing.T, nodes []*Node, owner *Node, prefix string) string {
	t.Helper()
	return ownedInEveryView(t, nodes, owner, recorderKind, prefix)
}

// waitValues waits until the recorder has want values for identity and
// checks that they are exactly want, in order.
func waitValues(t *testing.T, r *recorder, identity string, want []int64) {
	t.Helper()
	waitFor(t, waitTimeout, fmt.Sprintf("%d values for %s", len(want), identity), func() bool {
		return len(r.values(identity)) >= len(want)
	})
	if got := r.values(identity); !slices.Equal(got, want) {
		t.Fatalf("%s got %v, want %v", identity, got, want)
	}
}

func sequence(from, to int64) []int64 {
	var s []int64
	for v := from; v <= to; v++ {
		s = append(s, v)
	}
	return s
}

// TestSendDeliversOnceInOrder sends one-way messages from one node to a
// grain it owns itself and to grains owned by the other two members, from
// a member that hosts the kind and from one that hosts nothing: each
// message runs exactly once, in the order sent, and the first one
// activates the fresh identity.
func TestSendDeliversOnceInOrder(t *testing.T) {
	t.Parallel()
	nodes, recs, _ := recorderCluster(t, 0, nil)
	const messages = 300
	for _, sender := range []*Node{nodes[0], nodes[2]} {
		for _, owner := range nodes[:2] {
			t.Run(fmt.Sprintf("from %s to %s", sender.Name(), owner.Name()), func(t *testing.T) {
				id := recorderOwnedBy(t, nodes, owner, "order-"+sender.Name())
				for v := range int64(messages) {
					if err := sender.Send(context.Background(), recordCall(id, v+1)); err != nil {
						t.Fatalf("Send %d: %v", v+1, err)
					}
				}
				rec := recs[owner.Name()]
				waitValues(t, rec, id, sequence(1, messages))
				// A call after them returns after they ran (same stream or
				// same node, queued behind them) and finds no duplicate.
				resp, err := sender.Invoke(context.Background(), Call{Kind: recorderKind, Identity: id, Method: methodCount,
					Request: &emptypb.Empty{}, NewResponse: newInt64})
				if err != nil || resp.(*wrapperspb.Int64Value).GetValue() != messages {
					t.Fatalf("Count: %v, %v; want %d", resp, err, messages)
				}
				if got := rec.activations(id); got != 1 {
					t.Errorf("%s activated %d times, want 1", id, got)
				}
			})
		}
	}
}

// activeRecorder returns a recorder grain that owner owns, activated by a
// one-way message of value 0 from nodes[0], which it has recorded.
func activeRecorder(t *testing.T, nodes []*Node, recs map[string]*recorder, owner *Node, prefix string) string {
	t.Helper()
	id := recorderOwnedBy(t, nodes, owner, prefix)
	if err := nodes[0].Send(context.Background(), recordCall(id, 0)); err != nil {
		t.Fatal(err)
	}
	waitValues(t, recs[owner.Name()], id, []int64{0})
	return id
}

// TestOneWayMessagesPrecedeALaterCall sends one gRPC message holding
// one-way messages to an active grain followed by a call to it, many times
// over: the reader collects the one-way messages for the grain's mailbox
// (see oneWayTarget), and the call, served on another goroutine, must
// still find every one of them handled. (Without the flush in
// conn.dispatch, it failed within the first dozen rounds.)
func TestOneWayMessagesPrecedeALaterCall(t *testing.T) {
	t.Parallel()
	nodes, recs, _ := recorderCluster(t, 0, nil)
	owner := nodes[1]
	id := activeRecorder(t, nodes, recs, owner, "precede")

	s := rawStream(t, owner)
	sendBatches(t, s, appendFrame(nil, &frame{typ: frameHello, node: "raw"}))
	const rounds, perRound = 50, 20
	for round := range uint64(rounds) {
		var batch []byte
		for range perRound {
			payload, err := proto.Marshal(wrapperspb.Int64(1))
			if err != nil {
				t.Fatal(err)
			}
			batch = appendFrame(batch, &frame{typ: frameRequest, oneWay: oneWaySent, kind: recorderKind, identity: id,
				method: methodRecord, payload: payload})
		}
		batch = appendFrame(batch, &frame{typ: frameRequest, id: round + 1, kind: recorderKind, identity: id, method: methodCount})
		// Cancels of requests nobody sent keep the reader busy after the
		// call, so that the call's goroutine has time to overtake a reader
		// that delivered the one-way messages only at the batch's end.
		for range 2000 {
			batch = appendFrame(batch, &frame{typ: frameCancel, id: 1 << 40})
		}
		sendBatches(t, s, batch)

		var reply []byte
		if err := s.RecvMsg(&reply); err != nil {
			t.Fatal(err)
		}
		var count wrapperspb.Int64Value
		err := decodeBatch(reply, func(f *frame) {
			if f.typ != frameResponse || f.id != round+1 || f.code != codes.OK {
				t.Fatalf("round %d: got %+v; want the response to the Count", round, f)
			}
			if err := proto.Unmarshal(f.payload, &count); err != nil {
				t.Fatal(err)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if want := int64(1 + (round+1)*perRound); count.GetValue() != want {
			t.Fatalf("round %d: the call found %d messages handled; want %d", round, count.GetValue(), want)
		}
	}
}

// TestUndecodableOneWayInARun puts a payload that does not decode between
// good one-way messages to an active grain, in one gRPC message, so that
// it reaches the reader's batch target (queueToTarget): the owner logs it
// once and drops it, and the messages around it arrive, in order.
func TestUndecodableOneWayInARun(t *testing.T) {
	t.Parallel()
	nodes, recs, logs := recorderCluster(t, 0, nil)
	owner := nodes[1]
	id := activeRecorder(t, nodes, recs, owner, "run")

	record := func(b []byte, payload []byte) []byte {
		return appendFrame(b, &frame{typ: frameRequest, oneWay: oneWaySent, kind: recorderKind, identity: id,
			method: methodRecord, payload: payload})
	}
	good := func(v int64) []byte {
		b, err := proto.Marshal(wrapperspb.Int64(v))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	s := rawStream(t, owner)
	batch := record(record(record(nil, good(1)), []byte{0x08}), good(2)) // 0x08: a varint field cut short
	sendBatches(t, s, appendFrame(nil, &frame{typ: frameHello, node: "raw"}), batch)

	waitValues(t, recs[owner.Name()], id, []int64{0, 1, 2})
	if got := logs[owner.Name()].count("cluster: dropped a one-way message", methodRecord, "decode"); got != 1 {
		t.Errorf("owner logged the undecodable message %d times, want once", got)
	}
}

// TestSendSurvivesPassivation sends one-way messages to a grain whose kind
// passivates it after a millisecond idle, so that its activations come and
// go between and under the messages: each message still runs exactly once,
// in order.
func TestSendSurvivesPassivation(t *testing.T) {
	t.Parallel()
	nodes, recs, _ := recorderCluster(t, time.Millisecond, nil)
	for _, owner := range nodes[:2] {
		id := recorderOwnedBy(t, nodes, owner, "passivate")
		for v := range int64(200) {
			if v%50 == 49 {
				// Let it be passivated now and then, for sure.
				waitFor(t, waitTimeout, "a passivation", func() bool {
					return len(recs[owner.Name()].values(id)) == int(v) && !activeOn(owner, recorderKind, id)
				})
			}
			if err := nodes[2].Send(context.Background(), recordCall(id, v+1)); err != nil {
				t.Fatalf("Send %d: %v", v+1, err)
			}
		}
		waitValues(t, recs[owner.Name()], id, sequence(1, 200))
		if got := recs[owner.Name()].activations(id); got < 4 {
			t.Errorf("%d activations, want at least 4", got)
		}
	}
}

// activeOn reports whether n has a running activation of the grain.
func activeOn(n *Node, kind, identity string) bool {
	a := n.acts.peek(actKey{kind, identity})
	return a != nil && (!a.activated() || !a.ref.Stopped())
}

// TestGrainSendsOneWay has a grain send one-way messages from inside a
// method: to a grain on another node, and to itself, which would deadlock
// as a call.
func TestGrainSendsOneWay(t *testing.T) {
	t.Parallel()
	nodes, recs, _ := recorderCluster(t, 0, nil)
	from := recorderOwnedBy(t, nodes, nodes[0], "from")
	to := recorderOwnedBy(t, nodes, nodes[1], "to")
	fwd := Call{Kind: recorderKind, Identity: from, Method: methodForward, Request: wrapperspb.String(to),
		NewResponse: func() proto.Message { return new(emptypb.Empty) }}
	if _, err := nodes[2].Invoke(context.Background(), fwd); err != nil {
		t.Fatal(err)
	}
	waitValues(t, recs[nodes[1].Name()], to, []int64{100})
	waitValues(t, recs[nodes[0].Name()], from, []int64{100})
}

// TestSendErrors checks what Send refuses, locally and for remote owners,
// and that the stream and the grain go on working after each.
func TestSendErrors(t *testing.T) {
	t.Parallel()
	nodes, recs, _ := recorderCluster(t, 0, nil)
	ctx := context.Background()
	local := recorderOwnedBy(t, nodes, nodes[0], "errors-local")
	remote := recorderOwnedBy(t, nodes, nodes[1], "errors-remote")
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	for _, id := range []string{local, remote} {
		unknownMethod := recordCall(id, 1)
		unknownMethod.Method = "/test.Recorder/Nope"
		wrongType := recordCall(id, 1)
		wrongType.Request = wrapperspb.String("not an int")
		noRequest := recordCall(id, 1)
		noRequest.Request = nil
		typedNilRequest := recordCall(id, 1)
		typedNilRequest.Request = (*wrapperspb.Int64Value)(nil)
		unknownKind := recordCall(id, 1)
		unknownKind.Kind = "test.Nope"
		for _, tc := range []struct {
			name string
			ctx  context.Context
			call Call
			opts []CallOption
			code codes.Code
			is   error
		}{
			// nodes[0] hosts the kind, so it knows the method is missing
			// even when the owner is another node.
			{"unknown method", ctx, unknownMethod, nil, codes.Unimplemented, ErrUnknownMethod},
			{"unknown kind", ctx, unknownKind, nil, codes.Unimplemented, ErrUnknownKind},
			{"no request", ctx, noRequest, nil, codes.InvalidArgument, ErrBadRequest},
			{"a typed nil request", ctx, typedNilRequest, nil, codes.InvalidArgument, ErrBadRequest},
			{"call ID", ctx, recordCall(id, 1), []CallOption{WithCallID("client", 1)}, codes.InvalidArgument, ErrBadRequest},
			{"canceled", canceled, recordCall(id, 1), nil, codes.Canceled, nil},
		} {
			t.Run(id+" "+tc.name, func(t *testing.T) {
				err := nodes[0].Send(tc.ctx, tc.call, tc.opts...)
				if status.Code(err) != tc.code || (tc.is != nil && !errors.Is(err, tc.is)) {
					t.Fatalf("Send: %v (code %v), want code %v wrapping %v", err, status.Code(err), tc.code, tc.is)
				}
			})
		}
		if id == local {
			// A request of the wrong type is caught where it is not encoded.
			if err := nodes[0].Send(ctx, wrongType); status.Code(err) != codes.InvalidArgument || !errors.Is(err, ErrBadRequest) {
				t.Fatalf("Send of the wrong type: %v, want InvalidArgument wrapping ErrBadRequest", err)
			}
		}
		if err := nodes[0].Send(ctx, recordCall(id, 7)); err != nil {
			t.Fatal(err)
		}
	}
	waitValues(t, recs[nodes[0].Name()], local, []int64{7})
	waitValues(t, recs[nodes[1].Name()], remote, []int64{7})
}

// TestSendToRemoteOwnerThatCannotDeliver sends, from a node that does not
// host the kind and so cannot check, messages the owner cannot deliver: an
// unknown method, and a payload that does not decode as the method's
// request. Send hands them over and returns nil; the owner logs each once
// and drops it, and the stream goes on: a good message sent after them
// arrives.
func TestSendToRemoteOwnerThatCannotDeliver(t *testing.T) {
	t.Parallel()
	nodes, recs, logs := recorderCluster(t, 0, nil)
	ctx := context.Background()
	id := recorderOwnedBy(t, nodes, nodes[1], "cannot")
	unknownMethod := recordCall(id, 1)
	unknownMethod.Method = "/test.Recorder/Nope"
	// Invalid UTF-8 where Forward's StringValue has a string.
	undecodable := Call{Kind: recorderKind, Identity: id, Method: methodForward, Request: wrapperspb.Bytes([]byte{0xff, 0xfe})}
	for _, call := range []Call{unknownMethod, undecodable, recordCall(id, 2)} {
		if err := nodes[2].Send(ctx, call); err != nil {
			t.Fatalf("Send %s: %v", call.Method, err)
		}
	}
	waitValues(t, recs[nodes[1].Name()], id, []int64{2})
	owner := logs[nodes[1].Name()]
	// The second drop of a second is logged at the next sweep (see
	// dropLog), in full as it is the only one.
	waitFor(t, waitTimeout, "the owner to log both drops", func() bool {
		return owner.count("cluster: dropped a one-way message") >= 2
	})
	if got := owner.count("cluster: dropped a one-way message", "/test.Recorder/Nope", "has no method"); got != 1 {
		t.Errorf("owner logged the unknown method %d times, want once", got)
	}
	if got := owner.count("cluster: dropped a one-way message", methodForward, "decode"); got != 1 {
		t.Errorf("owner logged the undecodable message %d times, want once", got)
	}
}

// TestOneWayGrainErrorsAndPanics: an error a one-way method returns is
// logged once by the owner; a panic is logged and supervised (the grain
// restarts, the node lives), past the restart limit too, after which the
// next message activates the grain again.
func TestOneWayGrainErrorsAndPanics(t *testing.T) {
	t.Parallel()
	nodes, recs, logs := recorderCluster(t, 0, func(c *Config) { c.PassivationInterval = time.Hour })
	ctx := context.Background()
	for _, owner := range nodes[:2] {
		t.Run("owner "+owner.Name(), func(t *testing.T) {
			id := recorderOwnedBy(t, nodes, owner, "panics")
			rec, log := recs[owner.Name()], logs[owner.Name()]
			send := func(v int64) {
				t.Helper()
				if err := nodes[0].Send(ctx, recordCall(id, v)); err != nil {
					t.Fatalf("Send(%d): %v", v, err)
				}
			}
			send(1)
			send(-2) // fails
			send(-1) // panics
			send(2)
			waitValues(t, rec, id, []int64{1, 2})
			if got := log.count("cluster: one-way message failed", id, "recorder: told to fail"); got != 1 {
				t.Errorf("the error was logged %d times, want once", got)
			}
			if got := log.count("cluster: grain panicked on a one-way message", id, "recorder: told to panic", "stack="); got != 1 {
				t.Errorf("the panic was logged with its stack %d times, want once", got)
			}
			if got := log.count("recorder: told to panic"); got != 1 {
				t.Errorf("the panic is in %d lines, want 1", got)
			}
			if got := rec.activations(id); got != 1 {
				t.Errorf("%d activations after one panic, want 1 (restarted in place)", got)
			}
			// Past the restart limit (2 in testConfig): the actor stops
			// (messages queued behind the panics would be lost with it);
			// the next message activates the grain afresh.
			for range 3 {
				send(-1)
			}
			waitFor(t, waitTimeout, "the grain's actor to stop", func() bool { return !activeOn(owner, recorderKind, id) })
			send(3)
			waitValues(t, rec, id, []int64{1, 2, 3})
			if got := rec.activations(id); got != 2 {
				t.Errorf("%d activations after the restart limit, want 2", got)
			}
		})
	}
}

// TestSendOnClosedNode: a closed node hands nothing over.
func TestSendOnClosedNode(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Kinds = []*Kind{newRecorderKind(newRecorder(), 0)}
	n := startNode(t, cfg)
	if err := n.Send(context.Background(), recordCall("a", 1)); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	err := n.Send(context.Background(), recordCall("a", 2))
	if status.Code(err) != codes.Unavailable || !errors.Is(err, ErrNodeClosed) {
		t.Fatalf("Send on a closed node: %v, want Unavailable wrapping ErrNodeClosed", err)
	}
}

// plainCaller hides a node's Send: it is a Caller only, like a user's fake.
type plainCaller struct{ Caller }

// TestSendFallsBackToInvoke: cluster.Send through a Caller that is not a
// Sender runs the message as a call, so it has run when Send returns, and
// the grain's error comes back.
func TestSendFallsBackToInvoke(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	rec := newRecorder()
	cfg.Kinds = []*Kind{newRecorderKind(rec, 0)}
	n := startNode(t, cfg)
	caller := plainCaller{n}
	if _, ok := Caller(caller).(Sender); ok {
		t.Fatal("plainCaller is a Sender")
	}
	if err := Send(context.Background(), caller, recordCall("a", 5)); err != nil {
		t.Fatal(err)
	}
	if got := rec.values("a"); !slices.Equal(got, []int64{5}) {
		t.Errorf("after Send returned: %v, want [5]", got)
	}
	if err := Send(context.Background(), caller, recordCall("a", -2)); err == nil || !strings.Contains(err.Error(), "told to fail") {
		t.Errorf("failing message through the fallback: %v, want the grain's error", err)
	}
	// Through the node itself, Send is one-way: the grain's error stays there.
	if err := Send(context.Background(), n, recordCall("a", -2)); err != nil {
		t.Errorf("failing message through the node: %v, want nil", err)
	}
}

// TestOneWayStateIsFlushed: what a one-way method changes is committed as
// after a call (FlushAfterCall), and a failing one leaves no change.
func TestOneWayStateIsFlushed(t *testing.T) {
	t.Parallel()
	store := memstore.New()
	nodes, _ := bankCluster(t, 2, store, 0, nil)
	id := accountOwnedBy(t, nodes[1], accountKind, "oneway")
	for _, amount := range []int64{5, 7, -100} {
		if err := nodes[0].Send(context.Background(), depositCall(accountKind, id, amount)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, waitTimeout, "the deposits to be committed", func() bool { return storedBalance(t, store, accountKind, id) == 12 })
	// The failed deposit ran after the others and committed nothing.
	if got := balance(t, nodes[0], accountKind, id); got != 12 {
		t.Errorf("balance %d, want 12", got)
	}
}

// TestOneWayContextHasTheDefaultDeadline: a one-way method runs under the
// node's DefaultCallTimeout, not under the sender's context, which may have
// ended since, locally and on a remote owner.
func TestOneWayContextHasTheDefaultDeadline(t *testing.T) {
	t.Parallel()
	nodes, recs, _ := recorderCluster(t, 0, nil)
	for _, owner := range nodes[:2] {
		id := recorderOwnedBy(t, nodes, owner, "deadline")
		ctx, cancel := context.WithCancel(context.Background())
		call := Call{Kind: recorderKind, Identity: id, Method: methodDeadline, Request: &emptypb.Empty{}}
		if err := nodes[0].Send(ctx, call); err != nil {
			t.Fatal(err)
		}
		cancel() // the sender gives up at once: the message runs anyway
		waitValues(t, recs[owner.Name()], id, []int64{1})
	}
}

// TestOneWayGrainContext: the GrainContext a one-way method gets (the
// message itself, see oneWayCall) does what a call's does: the grain's
// names, calls to other grains, ErrReentrant for a call to the grain
// itself, reminders, and the node's DefaultCallTimeout or, without one, no
// deadline. Each owner is probed with a call and then with a one-way
// message, which must agree.
func TestOneWayGrainContext(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		timeout time.Duration // DefaultCallTimeout; 0 leaves the tests' default (waitTimeout)
		want    int64
	}{
		{"default deadline", 0, probeAll | probeDeadline},
		{"no deadline", -1, probeAll | probeNoDeadline},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			nodes, recs, _ := recorderCluster(t, 0, func(cfg *Config) {
				if tc.timeout != 0 {
					cfg.DefaultCallTimeout = tc.timeout
				}
			})
			for _, owner := range nodes[:2] {
				id := recorderOwnedBy(t, nodes, owner, "probe")
				call := Call{Kind: recorderKind, Identity: id, Method: methodProbe, Request: &emptypb.Empty{},
					NewResponse: func() proto.Message { return new(emptypb.Empty) }}
				if _, err := nodes[0].Invoke(context.Background(), call); err != nil {
					t.Fatal(err)
				}
				if err := nodes[0].Send(context.Background(), call); err != nil {
					t.Fatal(err)
				}
				waitValues(t, recs[owner.Name()], id, []int64{tc.want, tc.want})
			}
		})
	}
}

// TestOneWayErrEndsAtTheDeadline: a one-way method that asks its context
// only for Err still gets context.DeadlineExceeded once the node's
// DefaultCallTimeout has passed: asking for the error starts the deadline,
// as asking for it or for Done does.
func TestOneWayErrEndsAtTheDeadline(t *testing.T) {
	t.Parallel()
	nodes, recs, _ := recorderCluster(t, 0, func(cfg *Config) { cfg.DefaultCallTimeout = 50 * time.Millisecond })
	for _, owner := range nodes[:2] {
		id := recorderOwnedBy(t, nodes, owner, "poll")
		call := Call{Kind: recorderKind, Identity: id, Method: methodPoll, Request: &emptypb.Empty{}}
		// Send's own deadline, for the activation on a loaded machine; the
		// message runs under the owner's DefaultCallTimeout all the same.
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		err := nodes[0].Send(ctx, call)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		waitValues(t, recs[owner.Name()], id, []int64{1})
	}
}

// TestGrainPanicIsLoggedOnce: a call that panics leaves one line in its
// owner's log, naming the grain and carrying the stack, and none anywhere
// else: the runtime's supervisor keeps quiet about grains.
func TestGrainPanicIsLoggedOnce(t *testing.T) {
	t.Parallel()
	nodes, _, logs := recorderCluster(t, 0, nil)
	for _, owner := range nodes[:2] {
		t.Run("owner "+owner.Name(), func(t *testing.T) {
			panicLines := func() int {
				n := 0
				for _, l := range logs {
					n += l.count("recorder: told to panic")
				}
				return n
			}
			before := panicLines()
			id := recorderOwnedBy(t, nodes, owner, "panics")
			_, err := nodes[0].Invoke(context.Background(), recordCall(id, -1))
			if !errors.Is(err, ErrGrainPanic) {
				t.Fatalf("Invoke = %v, want ErrGrainPanic", err)
			}
			if got := logs[owner.Name()].count("cluster: grain panicked", id, methodRecord, "recorder: told to panic", "stack="); got != 1 {
				t.Errorf("the owner logged the panic with its stack %d times, want once", got)
			}
			if lines := panicLines() - before; lines != 1 {
				t.Errorf("the panic is in %d lines across the nodes, want 1", lines)
			}
		})
	}
}

// TestOneWayToANodeThatDoesNotOwnTheGrainIsForwarded sends one-way
// messages from the third node to the first for a grain the second owns,
// as a sender whose view of the members is behind or ahead of the first
// node's does. The first node forwards the message to the owner. A message
// that comes to it marked forwarded, once or twice, goes on once more, to
// the owner, once its wait for a view in which the first node owns the
// grain is over (the forwarder's view was behind: see
// mayForwardAfterWaiting); it is dropped and logged if it came from that
// owner, or was forwarded three times already.
func TestOneWayToANodeThatDoesNotOwnTheGrainIsForwarded(t *testing.T) {
	t.Parallel()
	// The forwarded message waits that long for a view in which the first
	// node owns its grain (see checkForwardedOwner), which never comes.
	nodes, recs, logs := recorderCluster(t, 0, func(c *Config) { c.forwardedPatience = time.Millisecond })
	ctx := context.Background()
	id := recorderOwnedBy(t, nodes, nodes[1], "forward")
	wrong := nodes[2].view.Load().byName[nodes[0].Name()]
	if wrong == nil {
		t.Fatalf("%s does not see %s", nodes[2].Name(), nodes[0].Name())
	}
	call := recordCall(id, 1)
	if err := nodes[2].sendRemote(ctx, wrong, &call, Metadata{}); err != nil {
		t.Fatal(err)
	}
	waitValues(t, recs[nodes[1].Name()], id, []int64{1})

	sendForwardedRecord(t, nodes[2], nodes[0], id, 2, oneWayForwarded)
	waitValues(t, recs[nodes[1].Name()], id, []int64{1, 2})
	// As a leaver forwards on what another leaver forwarded to it, by a
	// view without the member that joined meanwhile and owns the grain.
	sendForwardedRecord(t, nodes[2], nodes[0], id, 3, oneWayForwardedTwice)
	waitValues(t, recs[nodes[1].Name()], id, []int64{1, 2, 3})

	for i, from := range []struct {
		node *Node
		mark oneWayMark
	}{{nodes[1], oneWayForwarded}, {nodes[2], oneWayForwardedThrice}} {
		sendForwardedRecord(t, from.node, nodes[0], id, int64(10+i), from.mark)
		waitFor(t, waitTimeout, "the forwarded message dropped", func() bool {
			return logs[nodes[0].Name()].count("cluster: dropped a one-way message", id, "does not own") == i+1
		})
	}
	if err := nodes[2].Send(ctx, recordCall(id, 4)); err != nil {
		t.Fatal(err)
	}
	waitValues(t, recs[nodes[1].Name()], id, []int64{1, 2, 3, 4})
	if got := len(recs[nodes[0].Name()].values(id)); got != 0 {
		t.Errorf("%s ran %d messages of a grain it does not own", nodes[0].Name(), got)
	}
}

// TestALeavingNodeForwardsAForwardedMessageOnceMore sends the first node,
// which is leaving, messages forwarded to it by a node whose view still had
// it as the grain's owner (two members leaving at once do that to each
// other). It will never own the grain, so it passes a message forwarded
// once or twice on to the owner it sees, without waiting; a message
// forwarded three times already is dropped and logged, so that views in
// flux cannot pass a message around for ever.
func TestALeavingNodeForwardsAForwardedMessageOnceMore(t *testing.T) {
	t.Parallel()
	// An hour: a message that waits for a view fails the test by its
	// deadline instead of being dropped.
	nodes, recs, logs := recorderCluster(t, 0, func(c *Config) { c.forwardedPatience = time.Hour })
	id := recorderOwnedBy(t, nodes, nodes[1], "hop")
	// The sender's view is older: it has not taken the leaver's word yet
	// (see Node.viewOf), and still sends there.
	holdView(t, nodes[2], func(ms []Member) []Member { return ms })
	nodes[0].transport.leaving.Store(true) // as Shutdown does first

	sendForwardedRecord(t, nodes[2], nodes[0], id, 1, oneWayForwarded)
	waitValues(t, recs[nodes[1].Name()], id, []int64{1})

	sendForwardedRecord(t, nodes[2], nodes[0], id, 2, oneWayForwardedTwice)
	waitValues(t, recs[nodes[1].Name()], id, []int64{1, 2})

	sendForwardedRecord(t, nodes[2], nodes[0], id, 3, oneWayForwardedThrice)
	waitFor(t, waitTimeout, "the message forwarded three times dropped", func() bool {
		return logs[nodes[0].Name()].count("cluster: dropped a one-way message", id, "does not own") == 1
	})
	if got := recs[nodes[1].Name()].values(id); len(got) != 2 {
		t.Errorf("the owner ran %v, want only the messages forwarded once and twice", got)
	}
}

// TestAForwardSkipsAPeerThatSaidItIsLeaving has the second node forward
// the first node, which is leaving, a message for a grain that every view
// has the second node own. If the second node said it is leaving too (two
// members leaving at once, neither view having the other's leave yet),
// the first node passes the message on to the owner without both of them,
// the third node (which has heard of both leaves), rather than send it
// back for one hop more. If the second node stays, the message goes back
// to it, and it runs there.
func TestAForwardSkipsAPeerThatSaidItIsLeaving(t *testing.T) {
	t.Parallel()
	for _, forwarderLeaves := range []bool{true, false} {
		t.Run(fmt.Sprintf("forwarder leaves %v", forwarderLeaves), func(t *testing.T) {
			t.Parallel()
			nodes, recs, logs := recorderClusterOf(t, 3, 3, 0, nil)
			leaver, forwarder, third := nodes[0], nodes[1], nodes[2]
			id := recorderOwnedBy(t, nodes, forwarder, "skip")
			// The forwarder's view has not taken the leaver's word yet
			// (see Node.viewOf), and still sends there.
			holdView(t, forwarder, func(ms []Member) []Member { return ms })
			leaver.transport.leaving.Store(true) // as Shutdown does first
			want := forwarder
			if forwarderLeaves {
				want = third
				forwarder.transport.leaving.Store(true)
				forwarder.transport.sayLeavingOnAll()
				holdView(t, third, func(members []Member) []Member {
					return slices.DeleteFunc(members, func(m Member) bool { return m.Name != third.Name() })
				})
			}
			sendForwardedRecord(t, forwarder, leaver, id, 1, oneWayForwarded)
			waitValues(t, recs[want.Name()], id, []int64{1})
			for _, n := range nodes {
				if got := recs[n.Name()].values(id); n != want && len(got) > 0 {
					t.Errorf("%s ran %v", n.Name(), got)
				}
				if got := logs[n.Name()].count("cluster: dropped a one-way message"); got > 0 {
					t.Errorf("%s dropped %d messages", n.Name(), got)
				}
			}
		})
	}
}

// TestAForwardSkipsEveryPeerThatSaidItIsLeaving: a peer that said it is
// leaving owns nothing, whatever the forwarder's view says, even when the
// message did not come from it (with two members leaving at once, a member
// that stays may forward to one of them a message that the other sent it
// by an older view). The forward goes to the owner without it.
func TestAForwardSkipsEveryPeerThatSaidItIsLeaving(t *testing.T) {
	t.Parallel()
	nodes, recs, _ := recorderClusterOf(t, 3, 3, 0, nil)
	forwarder, leaver, next := nodes[0], nodes[1], nodes[2]
	id := ownedNextBy(t, forwarder, leaver.Name(), next.Name(), "said")
	holdView(t, next, func(members []Member) []Member { // it has heard of the leave
		return slices.DeleteFunc(members, func(m Member) bool { return m.Name == leaver.Name() })
	})
	// The forwarder has the leaver's word, but its view has not taken it
	// yet (see Node.viewOf): the forward skips the leaver all the same.
	holdView(t, forwarder, func(ms []Member) []Member { return ms })
	c, err := leaver.transport.conn(context.Background(), leaver.view.Load().byName[forwarder.Name()])
	if err != nil {
		t.Fatal(err)
	}
	c.sayLeaving()
	waitFor(t, waitTimeout, "the leaver's word at the forwarder", func() bool { return forwarder.transport.saidLeaving(leaver.Name()) })
	f := frame{typ: frameRequest, oneWay: oneWaySent, kind: recorderKind, identity: id, method: methodRecord,
		payload: []byte{0x08, 0x04}} // an Int64Value of 4
	if !forwarder.forwardOneWay(&f) {
		t.Fatal("the forwarder took itself for the owner")
	}
	waitValues(t, recs[next.Name()], id, []int64{4})
	if got := recs[leaver.Name()].values(id); len(got) > 0 {
		t.Errorf("the leaver ran %v", got)
	}
}

// TestAForwardedMessageWaitingAtANodeThatBeginsToLeaveIsPassedOn: a node
// that receives a forwarded message for a grain it does not own waits for
// a view in which it does; if it begins to leave meanwhile, it never will,
// and its farewell waits for that lane: it passes the message on to the
// owner at once rather than when its wait, or its farewell, runs out.
func TestAForwardedMessageWaitingAtANodeThatBeginsToLeaveIsPassedOn(t *testing.T) {
	t.Parallel()
	nodes, recs, _ := recorderClusterOf(t, 3, 3, 0, func(c *Config) {
		c.forwardedPatience = time.Hour
		c.farewellPatience = waitTimeout / 2
	})
	sender, leaver, owner := nodes[0], nodes[1], nodes[2]
	id := recorderOwnedBy(t, nodes, owner, "waiting")
	sendForwardedRecord(t, sender, leaver, id, 5, oneWayForwarded)
	waitFor(t, waitTimeout, "the message to wait in a lane", func() bool {
		leaver.transport.mu.Lock()
		defer leaver.transport.mu.Unlock()
		return leaver.transport.busyLanes > 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := leaver.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waitValues(t, recs[owner.Name()], id, []int64{5})
}

// TestAForwardedMessageWhoseGrainMovesAwayAndBackRuns: a forwarded message
// for a grain its receiver owns waits for the grain's activation, and the
// receiver's view changes meanwhile so that it owns the grain no longer,
// and then back (a staying host was seen to lose a leaver's grains for a
// moment during the leave). The message may not be forwarded again; it waits for a view in
// which its receiver owns the grain, as on arrival, and runs, where it was
// dropped.
func TestAForwardedMessageWhoseGrainMovesAwayAndBackRuns(t *testing.T) {
	t.Parallel()
	activating, activate := make(chan struct{}), make(chan struct{})
	nodes, recs, logs := recorderClusterOf(t, 2, 2, 0, func(cfg *Config) {
		if strings.HasSuffix(cfg.NodeName, "-n0") {
			cfg.activating = pauseFirst(activating, activate)
		}
	})
	receiver, sender := nodes[0], nodes[1]
	id := recorderOwnedBy(t, nodes, receiver, "away")
	setView := holdViews(t, receiver)
	sendForwardedRecord(t, sender, receiver, id, 6, oneWayForwarded)
	receive(t, activating, "the grain's activation")
	setView(withStatus(receiver.Name(), StatusLeaving)) // it owns nothing now
	close(activate)
	waitFor(t, waitTimeout, "the message to wait for a view, or to be dropped", func() bool {
		receiver.viewMu.Lock()
		defer receiver.viewMu.Unlock()
		return receiver.viewNext != nil || logs[receiver.Name()].count("cluster: dropped a one-way message", id) > 0
	})
	setView(withStatus(receiver.Name(), StatusAlive)) // it owns the grain again
	waitValues(t, recs[receiver.Name()], id, []int64{6})
}

// TestForwardToAnUnreachableOwnerGoesToTheNextOrIsDropped sends one-way
// messages to the first node for grains that, in the first node's view, a
// member nobody can reach owns: the forward fails to connect, and nothing
// was handed over. The message goes once more, to the owner without that
// member, which runs it (its view has no such member); when that owner is
// the first node itself, which would activate a grain its view places
// elsewhere, it waits for a view in which it owns the grain (see
// TestAStayingNodeBehindALeaveRunsWhatItCouldNotForward), and when none
// comes, the message is logged as dropped, naming the owner it could not
// reach, rather than lost without a word or run there.
func TestForwardToAnUnreachableOwnerGoesToTheNextOrIsDropped(t *testing.T) {
	t.Parallel()
	nodes, recs, logs := recorderCluster(t, 0, func(c *Config) { c.forwardedPatience = 100 * time.Millisecond })
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unreachable := lis.Addr().String()
	if err := lis.Close(); err != nil {
		t.Fatal(err)
	}
	holdView(t, nodes[0], func(members []Member) []Member {
		return append(members, Member{Name: "ghost", GRPCAddr: unreachable, Kinds: []string{recorderKind}, Status: StatusAlive})
	})
	dropped, next := ownedNextBy(t, nodes[0], "ghost", nodes[0].Name(), "ghost"), ownedNextBy(t, nodes[0], "ghost", nodes[1].Name(), "ghost")
	for _, id := range []string{dropped, next} {
		call := recordCall(id, 1)
		if err := nodes[2].sendRemote(context.Background(), nodes[2].view.Load().byName[nodes[0].Name()], &call, Metadata{}); err != nil {
			t.Fatal(err)
		}
	}
	waitValues(t, recs[nodes[1].Name()], next, []int64{1})
	waitFor(t, waitTimeout, "the message dropped, with the owner it could not reach", func() bool {
		return logs[nodes[0].Name()].count("cluster: dropped a one-way message", dropped, "connect to ghost at "+unreachable) == 1
	})
	for name, r := range recs {
		if got := r.values(dropped); len(got) > 0 {
			t.Errorf("%s ran %v", name, got)
		}
	}
}

// TestSendPlacesAgainWhenTheGrainMovesWhileItWaits sends a one-way message
// on the grain's owner while the grain deactivates there (its OnDeactivate
// waits), so that Send waits for the grain's next activation; meanwhile a
// member joins and takes the grain over. Activating it again on the old
// owner would make a stray, so Send must place the message again and hand
// it to the new owner.
func TestSendPlacesAgainWhenTheGrainMovesWhileItWaits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	inHook, release := make(chan struct{}), make(chan struct{})
	open := sync.OnceFunc(func() { close(release) })
	t.Cleanup(open) // before the nodes close, which wait for the grain
	recA, recB := newRecorder(), newRecorder()
	kindA := newRecorderKind(recA, -1)
	newRecorderGrain := kindA.New
	var made atomic.Int32
	kindA.New = func(identity string) any {
		newRecorderGrain(identity)
		if made.Add(1) == 1 { // only the first activation's hook waits
			return gateGrain{enter: func() { close(inHook) }, release: release}
		}
		return struct{}{}
	}
	cfgA, cfgB := testConfig(t), testConfig(t)
	cfgA.NodeName, cfgB.NodeName = cfgA.NodeName+"-a", cfgB.NodeName+"-b"
	cfgA.Kinds, cfgB.Kinds = []*Kind{kindA}, []*Kind{newRecorderKind(recB, -1)}
	cfgA.PassivationInterval, cfgB.PassivationInterval = time.Hour, time.Hour // only the test deactivates
	id := movingIdentity(recorderKind, cfgA.NodeName, cfgB.NodeName)
	a := startNode(t, cfgA)
	if err := a.Send(ctx, recordCall(id, 1)); err != nil {
		t.Fatal(err)
	}
	waitValues(t, recA, id, []int64{1})

	act := a.acts.peek(actKey{recorderKind, id})
	a.acts.retire(act)
	receive(t, inHook, "OnDeactivate on node a")
	sent := make(chan error, 1)
	go func() { sent <- a.Send(ctx, recordCall(id, 2)) }()
	waitFor(t, waitTimeout, "Send to wait for the grain's next activation", func() bool {
		sh, _ := a.acts.shardOfActivation(act)
		sh.mu.Lock()
		defer sh.mu.Unlock()
		return act.gone != nil // made by the first call that waits
	})
	cfgB.Seeds = []string{a.GossipAddr()}
	b := startNode(t, cfgB)
	waitConverged(t, []*Node{a, b}, 2)
	open()

	if err := receive(t, sent, "Send"); err != nil {
		t.Fatalf("Send while the grain moved: %v", err)
	}
	waitValues(t, recB, id, []int64{2})
	if got := recA.activations(id); got != 1 {
		t.Errorf("node a made the grain %d times, want once", got)
	}
}

// TestForwardedMessageWaitsForTheViewThatMakesThisNodeItsOwner forwards a
// message to the first node for a grain the second owns, as the second
// does when it leaves: it knows before the others that it no longer owns
// anything. The first node must hold the message until its view drops the
// second node, and then run it, rather than drop it.
func TestForwardedMessageWaitsForTheViewThatMakesThisNodeItsOwner(t *testing.T) {
	t.Parallel()
	nodes, recs, logs := recorderCluster(t, 0, func(c *Config) { c.forwardedPatience = waitTimeout })
	ctx := context.Background()
	id := recorderOwnedBy(t, nodes, nodes[1], "leaving") // the first node's once the second has left
	sendForwardedRecord(t, nodes[2], nodes[0], id, 1, oneWayForwarded)
	waitFor(t, waitTimeout, "the forwarded message to wait for a newer view", func() bool {
		nodes[0].viewMu.Lock()
		defer nodes[0].viewMu.Unlock()
		return nodes[0].viewNext != nil // made by the first to wait (awaitView)
	})
	if err := nodes[1].Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waitValues(t, recs[nodes[0].Name()], id, []int64{1})
	if got := logs[nodes[0].Name()].count("cluster: dropped a one-way message"); got != 0 {
		t.Errorf("the first node dropped %d one-way messages", got)
	}
}

// sendForwardedRecord sends from to to a Record(v) one-way message for the
// recorder grain id, marked forwarded (mark), as a node that did not own
// the grain would pass it on.
func sendForwardedRecord(t *testing.T, from, to *Node, id string, v int64, mark oneWayMark) {
	t.Helper()
	payload, err := proto.Marshal(wrapperspb.Int64(v))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m, ok := from.view.Load().member(to.Name()) // leaving, perhaps: it said so
	if !ok {
		t.Fatalf("%s does not know %s", from.Name(), to.Name())
	}
	c, err := from.transport.conn(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	f := frame{typ: frameRequest, oneWay: mark, kind: recorderKind, identity: id, method: methodRecord, payload: payload}
	if err := c.send(ctx, &f); err != nil {
		t.Fatal(err)
	}
}

// TestForwardedMessageWaitsOncePerView checks that a forwarded message for
// a grain this node does not own does not wait for a newer view when a
// wait already ran out in the current one (see checkForwardedOwner): one
// forwarded three times is dropped at once, one forwarded once goes on to
// the owner at once, and nothing waits for a view.
func TestForwardedMessageWaitsOncePerView(t *testing.T) {
	t.Parallel()
	nodes, recs, logs := recorderCluster(t, 0, func(c *Config) { c.forwardedPatience = time.Hour })
	id := recorderOwnedBy(t, nodes, nodes[1], "gaveup")
	nodes[0].gaveUp.Store(nodes[0].view.Load()) // as if a wait had run out in this view
	sendForwardedRecord(t, nodes[2], nodes[0], id, 1, oneWayForwardedThrice)
	waitFor(t, waitTimeout, "the forwarded message dropped", func() bool {
		return logs[nodes[0].Name()].count("cluster: dropped a one-way message", id, "does not own") == 1
	})
	sendForwardedRecord(t, nodes[2], nodes[0], id, 2, oneWayForwarded)
	waitValues(t, recs[nodes[1].Name()], id, []int64{2})
	nodes[0].viewMu.Lock()
	defer nodes[0].viewMu.Unlock()
	if nodes[0].viewNext != nil {
		t.Error("the message waited for a newer view")
	}
}

// selfSender sends itself one one-way message from OnActivate or from
// OnDeactivate (once per test, across activations), and reports Send's
// error; its Note method reports each note it runs.
type selfSender struct {
	inActivate   bool
	failActivate error // what OnActivate returns after sending
	once         *sync.Once
	sent         chan error
}

// newSelfKind returns the kind test.Self of grains newGrain makes, whose
// Note method reports each note it runs on noted.
func newSelfKind(newGrain func() *selfSender, noted chan<- string) *Kind {
	return &Kind{
		Name:        "test.Self",
		IdleTimeout: -1,
		New:         func(string) any { return newGrain() },
		Methods: []Method{{
			Name: "/test.Self/Note", NewRequest: newString,
			Handle: func(_ any, _ GrainContext, req proto.Message) (proto.Message, error) {
				noted <- req.(*wrapperspb.StringValue).GetValue()
				return req, nil
			},
		}},
	}
}

func (g *selfSender) send(ctx GrainContext, note string) {
	g.once.Do(func() {
		g.sent <- ctx.(Sender).Send(ctx, Call{Kind: "test.Self", Identity: ctx.Identity(), Method: "/test.Self/Note",
			Request: wrapperspb.String(note)})
	})
}

func (g *selfSender) OnActivate(ctx GrainContext) error {
	if g.inActivate {
		g.send(ctx, "from OnActivate")
	}
	return g.failActivate
}

func (g *selfSender) OnDeactivate(ctx GrainContext) error {
	if !g.inActivate {
		g.send(ctx, "from OnDeactivate")
	}
	return nil
}

// TestAGrainSendsItselfAMessageFromItsHooks: a one-way message a grain
// sends itself from OnActivate or OnDeactivate went through the node,
// which waited for the activation to be done or gone, that is for the hook
// itself: the hook hung until its deadline, and the message was lost. Now
// Send returns at once, and the message runs: after OnActivate on the
// activation it came from, after OnDeactivate on the grain's next one.
func TestAGrainSendsItselfAMessageFromItsHooks(t *testing.T) {
	t.Parallel()
	for _, inActivate := range []bool{true, false} {
		name := map[bool]string{true: "OnActivate", false: "OnDeactivate"}[inActivate]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sent, noted := make(chan error, 1), make(chan string, 4)
			var once sync.Once
			kind := newSelfKind(func() *selfSender {
				return &selfSender{inActivate: inActivate, once: &once, sent: sent}
			}, noted)
			nodes := startCluster(t, 1, func(string) []*Kind { return []*Kind{kind} }, nil)
			n := nodes[0]
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := n.Invoke(ctx, Call{Kind: "test.Self", Identity: "s", Method: "/test.Self/Note",
				Request: wrapperspb.String("a call"), NewResponse: newString}); err != nil {
				t.Fatalf("the call that activates the grain: %v", err)
			}
			if !inActivate {
				if got := receive(t, noted, "the call"); got != "a call" {
					t.Fatalf("ran %q, want the call", got)
				}
				hk := n.kinds["test.Self"]
				n.acts.deactivateWhere(sweepAll, func(a *activation, _ time.Duration) bool { return a.hk == hk }) // as a passivation does
			}
			if err := receive(t, sent, "the hook's Send"); err != nil {
				t.Fatalf("Send from %s: %v", name, err)
			}
			want := "from " + name
			for got := receive(t, noted, "the message"); got != want; got = receive(t, noted, "the message") {
				if got != "a call" {
					t.Fatalf("ran %q, want %q", got, want)
				}
			}
		})
	}
}

// TestAMessageAGrainSentItselfFromAFailedActivationIsDropped: a grain sends
// itself a message from OnActivate, which then fails. Send returned nil (the
// message was kept for the actor), but no actor comes: the message is
// dropped with a log line, as one to a grain that fails is, and never runs.
func TestAMessageAGrainSentItselfFromAFailedActivationIsDropped(t *testing.T) {
	t.Parallel()
	sent, noted := make(chan error, 1), make(chan string, 4)
	var once sync.Once
	kind := newSelfKind(func() *selfSender {
		return &selfSender{inActivate: true, failActivate: errors.New("test: activation fails"), once: &once, sent: sent}
	}, noted)
	logs := &logLines{}
	nodes := startCluster(t, 1, func(string) []*Kind { return []*Kind{kind} }, func(cfg *Config) {
		cfg.Logger = slog.New(logs.handler(cfg.Logger.Handler()))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := nodes[0].Invoke(ctx, Call{Kind: "test.Self", Identity: "s", Method: "/test.Self/Note",
		Request: wrapperspb.String("a call"), NewResponse: newString}, WithoutRetry())
	if !errors.Is(err, ErrActivation) {
		t.Fatalf("the call whose activation fails: %v, want ErrActivation", err)
	}
	if err := receive(t, sent, "OnActivate's Send"); err != nil {
		t.Fatalf("Send from OnActivate: %v", err)
	}
	// The activation drops what it kept before its error reaches the call.
	if logs.count("dropped a one-way message a grain sent itself while activating", "identity=s", "method=/test.Self/Note") != 1 {
		t.Fatal("the kept message was not logged as dropped once")
	}
	select {
	case got := <-noted:
		t.Fatalf("ran %q on a grain whose activation failed", got)
	default:
	}
}
