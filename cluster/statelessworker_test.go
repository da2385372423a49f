package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/memstore"
)

// The kind of TestStatelessWorkers, hosted by the nodes that host workers:
// Where answers "<node>/<activation>/<identity as the grain saw it>", Hold
// does the same once the test releases that activation, Misuse answers what
// the grain's State, RegisterReminder and a call to itself said, and Note
// (one-way) records where it ran; Forget unregisters the reminder
// "stale", and each firing of a reminder records where it ran.
const (
	workerKind   = "test.Worker"
	workerWhere  = "/test.Worker/Where"
	workerHold   = "/test.Worker/Hold"
	workerMisuse = "/test.Worker/Misuse"
	workerNote   = "/test.Worker/Note"
	workerForget = "/test.Worker/Forget"
	workerCount  = 3
)

// workerFarm records what the workers of one node did.
type workerFarm struct {
	node   string
	serial atomic.Int64 // activations made, to name them
	held   chan string  // the answer of each Hold as it starts waiting
	noted  chan string  // where each Note ran
	fired  chan string  // where each reminder fired, while there is room

	mu          sync.Mutex
	deactivated map[string]bool          // activations whose OnDeactivate ran
	release     map[string]chan struct{} // by activation name; nil once the test ends
}

func newWorkerFarm(node string) *workerFarm {
	return &workerFarm{node: node, held: make(chan string, 16), noted: make(chan string, 16),
		fired:       make(chan string, 16),
		deactivated: make(map[string]bool), release: make(map[string]chan struct{})}
}

// releaseOf returns the channel that lets the Holds of the activation named
// name return: a send lets one go, a close (free) all.
func (f *workerFarm) releaseOf(name string) chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := f.release[name]
	if ch == nil {
		ch = make(chan struct{})
		if f.release == nil {
			close(ch) // the test ended
		} else {
			f.release[name] = ch
		}
	}
	return ch
}

// free lets every Hold that waits return.
func (f *workerFarm) free() { f.freeAll(false) }

// end lets every Hold return, those to come included.
func (f *workerFarm) end() { f.freeAll(true) }

func (f *workerFarm) freeAll(forever bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ch := range f.release {
		close(ch)
	}
	f.release = make(map[string]chan struct{})
	if forever {
		f.release = nil
	}
}

// wasDeactivated reports whether the OnDeactivate of the activation named
// name ran.
func (f *workerFarm) wasDeactivated(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.deactivated[name]
}

type workerGrain struct {
	f    *workerFarm
	name string // node/serial
}

func (g *workerGrain) OnDeactivate(GrainContext) error {
	g.f.mu.Lock()
	defer g.f.mu.Unlock()
	g.f.deactivated[g.name] = true
	return nil
}

// OnReminder implements ReminderReceiver.
func (g *workerGrain) OnReminder(GrainContext, string) error {
	select {
	case g.f.fired <- g.f.node:
	default: // the test has seen enough
	}
	return nil
}

// where is Where's answer.
func (g *workerGrain) where(ctx GrainContext) proto.Message {
	return wrapperspb.String(g.name + "/" + ctx.Identity())
}

func newWorkerKind(f *workerFarm) *Kind {
	method := grainMethod[*workerGrain]
	return &Kind{
		Name:             workerKind,
		StatelessWorkers: workerCount,
		IdleTimeout:      50 * time.Millisecond,
		New: func(identity string) any {
			return &workerGrain{f: f, name: fmt.Sprintf("%s/%d", f.node, f.serial.Add(1))}
		},
		Methods: []Method{
			method(workerWhere, newString, func(g *workerGrain, ctx GrainContext, _ proto.Message) (proto.Message, error) {
				return g.where(ctx), nil
			}),
			method(workerHold, newString, func(g *workerGrain, ctx GrainContext, _ proto.Message) (proto.Message, error) {
				answer := g.where(ctx)
				g.f.held <- answer.(*wrapperspb.StringValue).GetValue()
				<-g.f.releaseOf(g.name)
				return answer, nil
			}),
			method(workerMisuse, newString, func(g *workerGrain, ctx GrainContext, _ proto.Message) (proto.Message, error) {
				st := ctx.State()
				_, found := st.TryGet("k")
				_, got := st.Get("k")
				refused := func(err error) bool { return errors.Is(err, ErrBadRequest) }
				_, self := ctx.Invoke(ctx, Call{Kind: workerKind, Identity: ctx.Identity(), Method: workerWhere,
					Request: wrapperspb.String(""), NewResponse: newString})
				return wrapperspb.String(fmt.Sprintf("found=%v set=%v remind=%v self=%v get=%v remove=%v flush=%v keys=%d message=%v",
					found, st.Set("k", nil), RegisterReminder(ctx, "r", time.Hour, 0), self,
					refused(got), refused(st.Remove("k")), refused(st.Flush(ctx)), len(st.Keys()), st.Message())), nil
			}),
			method(workerForget, newString, func(g *workerGrain, ctx GrainContext, _ proto.Message) (proto.Message, error) {
				return new(wrapperspb.StringValue), UnregisterReminder(ctx, "stale")
			}),
			method(workerNote, newString, func(g *workerGrain, ctx GrainContext, _ proto.Message) (proto.Message, error) {
				g.f.noted <- g.name
				return new(wrapperspb.StringValue), nil
			}),
		},
	}
}

// workerCluster starts size nodes that host the worker kind, but the last
// if withClient, and returns them with their farms by node name. Every Hold
// returns before the nodes close.
func workerCluster(t *testing.T, size int, withClient bool, configure func(*Config)) ([]*Node, map[string]*workerFarm) {
	t.Helper()
	farms := make(map[string]*workerFarm)
	nodes := startCluster(t, size, func(name string) []*Kind {
		if withClient && strings.HasSuffix(name, fmt.Sprintf("-n%d", size-1)) {
			return nil // a client of the kind
		}
		farms[name] = newWorkerFarm(name)
		return []*Kind{newWorkerKind(farms[name])}
	}, configure)
	t.Cleanup(func() { // cleanups run last in, first out: before the nodes close
		for _, f := range farms {
			f.end()
		}
	})
	return nodes, farms
}

// callWorker calls method on the worker kind's grain identity from c, and
// returns its answer.
func callWorker(t *testing.T, c Caller, method, identity string) (string, error) {
	resp, err := c.Invoke(t.Context(), Call{Kind: workerKind, Identity: identity, Method: method,
		Request: wrapperspb.String(""), NewResponse: newString})
	if err != nil {
		return "", err
	}
	return resp.(*wrapperspb.StringValue).GetValue(), nil
}

// TestStatelessWorkers: the grains of a kind with StatelessWorkers run on
// the node that calls them when it hosts the kind, and on the placement's
// owner when it does not; an identity has up to StatelessWorkers
// activations at once, a call past them waits on the one with the fewest
// calls in, and idle workers passivate; the grain sees its identity, no state,
// no reminders, and no call to itself.
func TestStatelessWorkers(t *testing.T) {
	t.Parallel()
	nodes, farms := workerCluster(t, 3, true, nil)
	client := nodes[2]
	ranOn := func(answer string) string { return answer[:strings.Index(answer, "/")] }

	// Hosts run the calls they make themselves; the client's go to the
	// owner its view places them on, among the hosts, and that owner runs
	// them without asking where its own view would place them.
	for i := range 20 {
		id := fmt.Sprintf("w-%d", i)
		for _, n := range nodes[:2] {
			got, err := callWorker(t, n, workerWhere, id)
			if err != nil || ranOn(got) != n.Name() || !strings.HasSuffix(got, "/"+id) {
				t.Fatalf("Where(%s) from host %s: %q, %v; want it run there, on identity %s", id, n.Name(), got, err, id)
			}
			if owner, _ := n.Owner(workerKind, id); owner.Name != n.Name() {
				t.Errorf("Owner(%s) on host %s: %s; want the host itself", id, n.Name(), owner.Name)
			}
		}
		owner, ok := client.Owner(workerKind, id)
		if !ok {
			t.Fatalf("the client sees no owner of %s", id)
		}
		if got, err := callWorker(t, client, workerWhere, id); err != nil || ranOn(got) != owner.Name {
			t.Fatalf("Where(%s) from the client: %q, %v; want it run on %s", id, got, err, owner.Name)
		}
	}

	// Up to workerCount activations of one identity at once; the call
	// past them waits on the first, which has no more calls in than the
	// others, and runs there once that one's Hold returns.
	host, farm := nodes[0], farms[nodes[0].Name()]
	id := "busy"
	type answer struct {
		got string
		err error
	}
	answers := make(chan answer, workerCount+1)
	hold := func() {
		go func() {
			got, err := callWorker(t, host, workerHold, id)
			answers <- answer{got, err}
		}()
	}
	seen := make(map[string]bool)
	var first string
	for i := range workerCount {
		hold()
		got := receive(t, farm.held, fmt.Sprintf("Hold #%d", i+1))
		activation := strings.TrimSuffix(got, "/"+id)
		if seen[activation] {
			t.Fatalf("Hold #%d runs on %s, which holds an earlier one; want a worker of its own", i+1, activation)
		}
		seen[activation] = true
		if i == 0 {
			first = activation
		}
	}
	before := host.Stats().Calls
	hold()
	waitFor(t, waitTimeout, "the last Hold counted in", func() bool { return host.Stats().Calls == before+1 })
	// The other identities the test called have one worker each, if any is
	// still active.
	if k := host.Stats().Kinds[workerKind]; k.Activations-k.Identities != workerCount-1 {
		t.Errorf("Stats of the kind with %s's %d workers busy: %d activations of %d identities; want %d more activations than identities",
			id, workerCount, k.Activations, k.Identities, workerCount-1)
	}
	select {
	case got := <-farm.held:
		t.Fatalf("a Hold past the %d workers runs at once, on %s; want it queued", workerCount, got)
	default:
	}
	farm.releaseOf(first) <- struct{}{}
	if got := receive(t, answers, "the first Hold's answer"); got.err != nil || got.got != first+"/"+id {
		t.Fatalf("the first Hold: %q, %v; want %s/%s", got.got, got.err, first, id)
	}
	if got := receive(t, farm.held, "the queued Hold"); got != first+"/"+id {
		t.Errorf("the queued Hold runs on %s; want %s, the worker it waited on", got, first)
	}
	farm.free()
	for range workerCount {
		if got := receive(t, answers, "a Hold's answer"); got.err != nil {
			t.Errorf("Hold: %v", got.err)
		}
	}
	// The burst's workers passivate once idle, each with its OnDeactivate.
	waitFor(t, waitTimeout, "the host's workers passivated", func() bool { return host.Stats().Activations == 0 })
	for activation := range seen {
		if !farm.wasDeactivated(activation) {
			t.Errorf("%s passivated without its OnDeactivate", activation)
		}
	}

	// Calls that arrive together take a worker each: an idle or new
	// worker is claimed before another call can see it free.
	together := "together"
	for range workerCount {
		go func() {
			got, err := callWorker(t, host, workerHold, together)
			answers <- answer{got, err}
		}()
	}
	clear(seen)
	for i := range workerCount {
		got := strings.TrimSuffix(receive(t, farm.held, fmt.Sprintf("Hold #%d of those sent together", i+1)), "/"+together)
		if seen[got] {
			t.Fatalf("two Holds sent together run on %s; want a worker each", got)
		}
		seen[got] = true
	}
	farm.free()
	for range workerCount {
		if got := receive(t, answers, "a Hold's answer"); got.err != nil {
			t.Errorf("Hold: %v", got.err)
		}
	}

	// A one-way message runs where it is sent from, too, the first on a
	// new worker and the next on it once idle; the client's go to the owner
	// its view names, over the stream, the second to the worker the first
	// made.
	note := func(from *Node, to string) {
		t.Helper()
		if err := from.Send(t.Context(), Call{Kind: workerKind, Identity: "noted", Method: workerNote, Request: wrapperspb.String("")}); err != nil {
			t.Fatalf("Send from %s: %v", from.Name(), err)
		}
		if got := receive(t, farms[to].noted, "the Note"); !strings.HasPrefix(got, to+"/") {
			t.Errorf("Note sent from %s ran on %s; want it on %s", from.Name(), got, to)
		}
	}
	noteOwner, _ := client.Owner(workerKind, "noted")
	for _, from := range []*Node{nodes[1], nodes[1], client, client} {
		to := from.Name()
		if from == client {
			to = noteOwner.Name
		}
		note(from, to)
	}

	got, err := callWorker(t, host, workerMisuse, "misuse")
	if err != nil {
		t.Fatalf("Misuse: %v", err)
	}
	for _, want := range []string{"found=false", "set=cluster: grain test.Worker/misuse is a stateless worker (Kind.StatelessWorkers) and has no state",
		"remind=cluster: reminder \"r\" of grain test.Worker/misuse: a stateless worker", "self=cluster: grain test.Worker/misuse calls test.Worker/misuse",
		"get=true remove=true flush=true keys=0 message=<nil>"} {
		if !strings.Contains(got, want) {
			t.Errorf("Misuse: %q; want %q in it", got, want)
		}
	}
}

// TestStatelessWorkerKindsAreChecked: a kind of stateless workers takes
// no state message, no manual flushes, and a worker count in bounds.
func TestStatelessWorkerKindsAreChecked(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		edit func(k *Kind)
		want string
	}{
		{"negative", func(k *Kind) { k.StatelessWorkers = -1 }, "StatelessWorkers is -1; want 0 to 1024"},
		{"too many", func(k *Kind) { k.StatelessWorkers = 1025 }, "StatelessWorkers is 1025; want 0 to 1024"},
		{"state message", func(k *Kind) { k.NewState = newInt64 }, "has no state message (NewState)"},
		{"manual flushes", func(k *Kind) { k.Flush = FlushManual }, "has no state to flush (FlushManual)"},
	} {
		k := newWorkerKind(newWorkerFarm("checked"))
		c.edit(k)
		err := validateKinds([]*Kind{k})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want an error saying %q", c.name, err, c.want)
		}
	}
	if err := validateKinds([]*Kind{newWorkerKind(newWorkerFarm("checked"))}); err != nil {
		t.Errorf("a kind of %d stateless workers: %v", workerCount, err)
	}
	var errs []error
	for _, n := range []int{1, maxStatelessWorkers} {
		k := newWorkerKind(newWorkerFarm("checked"))
		k.StatelessWorkers = n
		errs = append(errs, validateKinds([]*Kind{k}))
	}
	if err := errors.Join(errs...); err != nil {
		t.Errorf("the bounds: %v", err)
	}
}

// TestStatelessWorkersWithinTheActivationLimit: a node at its
// ActivationLimit starts no worker more; a call to an identity that has
// one waits on it rather than fail, and only an identity with none is
// refused.
func TestStatelessWorkersWithinTheActivationLimit(t *testing.T) {
	t.Parallel()
	farm := newWorkerFarm("limited")
	cfg := testConfig(t)
	cfg.Kinds = []*Kind{newWorkerKind(farm)}
	cfg.ActivationLimit = 1
	n := startNode(t, cfg)
	t.Cleanup(farm.end) // before the node closes
	second := make(chan error, 1)
	go func() {
		_, err := callWorker(t, n, workerHold, "limited")
		second <- err
	}()
	first := strings.TrimSuffix(receive(t, farm.held, "the first Hold"), "/limited")
	go func() {
		_, err := callWorker(t, n, workerHold, "limited")
		second <- err
	}()
	waitFor(t, waitTimeout, "the second Hold counted in", func() bool { return n.Stats().Calls == 2 })
	if _, err := callWorker(t, n, workerWhere, "other"); !errors.Is(err, ErrTooManyActivations) {
		t.Errorf("a call to another identity at the limit: %v; want ErrTooManyActivations", err)
	}
	farm.releaseOf(first) <- struct{}{}
	if got := receive(t, farm.held, "the second Hold"); got != first+"/limited" {
		t.Errorf("the second Hold ran on %s; want %s, the one worker the limit allows", got, first)
	}
	farm.free()
	for range 2 {
		if err := receive(t, second, "a Hold's answer"); err != nil {
			t.Errorf("Hold at the limit: %v; want it to wait for the worker", err)
		}
	}
}

// TestAFencedHostRunsNoWorkers: a host that loses its majority
// (Config.KeepMajority) owns no grain of a worker kind either: its workers
// deactivate, and its own calls to the kind fail with ErrNoQuorum until it
// sees a majority again, when they run on it once more.
func TestAFencedHostRunsNoWorkers(t *testing.T) {
	t.Parallel()
	nodes, _ := workerCluster(t, 2, false, func(cfg *Config) { cfg.KeepMajority = true })
	// The member whose name sorts last has no majority alone (the first
	// keeps a tie).
	first, last := nodes[0], nodes[1]
	if last.Name() < first.Name() {
		first, last = last, first
	}
	if got, err := callWorker(t, last, workerWhere, "fenced"); err != nil || !strings.HasPrefix(got, last.Name()+"/") {
		t.Fatalf("Where before the fence: %q, %v; want it run on %s", got, err, last.Name())
	}
	setLast := holdViews(t, last)
	setLast(withStatuses(StatusFailed, first.Name()))
	if !last.Fenced() {
		t.Fatalf("%s is not fenced with %s failed in its view", last.Name(), first.Name())
	}
	waitFor(t, waitTimeout, "the fenced host's workers deactivated", func() bool { return last.Stats().Activations == 0 })
	if owner, ok := last.Owner(workerKind, "fenced"); ok {
		t.Errorf("Owner on the fenced host: %s; want none", owner.Name)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := last.Invoke(ctx, Call{Kind: workerKind, Identity: "fenced", Method: workerWhere,
		Request: wrapperspb.String(""), NewResponse: newString}); !errors.Is(err, ErrNoQuorum) {
		t.Errorf("a call from the fenced host: %v; want ErrNoQuorum", err)
	}
	setLast(withStatuses(StatusAlive, first.Name()))
	if got, err := callWorker(t, last, workerWhere, "fenced"); err != nil || !strings.HasPrefix(got, last.Name()+"/") {
		t.Errorf("Where once the view healed: %q, %v; want it run on %s", got, err, last.Name())
	}
}

// TestAWorkerHostThatShutsDownOwnsNoWorkers: a host owns the grains of its
// worker kinds only while it is alive in its own view: once its Shutdown
// begins, it places them on the other hosts, as its peers do, and a
// client's calls go there.
func TestAWorkerHostThatShutsDownOwnsNoWorkers(t *testing.T) {
	t.Parallel()
	nodes, farms := workerCluster(t, 3, true, nil)
	stays, leaves, client := nodes[0], nodes[1], nodes[2]
	id := placedOn(t, workerKind, "leaving", map[*Node]string{client: leaves.Name()})
	held := make(chan error, 1)
	go func() {
		_, err := callWorker(t, client, workerHold, id)
		held <- err
	}()
	receive(t, farms[leaves.Name()].held, "the Hold on the host that leaves")
	shutdown := make(chan error, 1)
	go func() { shutdown <- leaves.Shutdown(context.Background()) }()
	waitFor(t, waitTimeout, "the leaving host to place its workers elsewhere", func() bool {
		owner, ok := leaves.Owner(workerKind, id)
		return ok && owner.Name == stays.Name()
	})
	farms[leaves.Name()].free()
	if err := receive(t, held, "the Hold's answer"); err != nil {
		t.Errorf("the Hold that held the leaving host: %v; want it answered before the host left", err)
	}
	if err := receive(t, shutdown, "the Shutdown"); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if got, err := callWorker(t, client, workerWhere, id); err != nil || !strings.HasPrefix(got, stays.Name()+"/") {
		t.Errorf("Where from the client once the host left: %q, %v; want it run on %s", got, err, stays.Name())
	}
}

// TestStoredRemindersOfAWorkerKindFireOnOneHost: a reminder stored for a
// kind before it became a kind of stateless workers fires on one of its
// hosts, the one that a node that does not host the kind places the
// identity on, though each host owns the identity in its own view; a
// worker's UnregisterReminder on another host deletes it, and the firing
// host drops it.
func TestStoredRemindersOfAWorkerKindFireOnOneHost(t *testing.T) {
	t.Parallel()
	store := memstore.New()
	t.Cleanup(func() { store.Close() })
	nodes, farms := workerCluster(t, 3, true, func(cfg *Config) { cfg.Store = store })
	client := nodes[2]
	const id = "reminded"
	owner, ok := client.Owner(workerKind, id)
	if !ok {
		t.Fatalf("the client places no owner for %s", id)
	}
	stale := storage.Reminder{Grain: storage.Key{Kind: workerKind, Identity: id}, Name: "stale",
		Due: time.Now(), Period: 10 * time.Millisecond}
	if err := store.SaveReminder(t.Context(), stale); err != nil {
		t.Fatal(err)
	}
	hosts := nodes[:2]
	for _, n := range hosts {
		n.reminders.Relist() // as a start would
	}
	fired := make(map[string]int)
	for range 8 {
		select {
		case node := <-farms[hosts[0].Name()].fired:
			fired[node]++
		case node := <-farms[hosts[1].Name()].fired:
			fired[node]++
		case <-time.After(waitTimeout):
			t.Fatalf("timed out waiting for the stale reminder to fire; fired so far: %v", fired)
		}
	}
	if len(fired) != 1 || fired[owner.Name] == 0 {
		t.Fatalf("the stale reminder fired %v; want every firing on %s, where the client places %s", fired, owner.Name, id)
	}

	other := hosts[0]
	if other.Name() == owner.Name {
		other = hosts[1]
	}
	if got, err := callWorker(t, other, workerForget, id); err != nil {
		t.Fatalf("Forget from %s: %q, %v", other.Name(), got, err)
	}
	for _, n := range hosts {
		waitFor(t, waitTimeout, "the stale reminder to leave the schedule of "+n.Name(), func() bool { return n.reminders.Len() == 0 })
	}
	if left, err := store.ListReminders(t.Context(), workerKind); err != nil || len(left) != 0 {
		t.Fatalf("reminders stored once Forget returned: %v, %v; want none", left, err)
	}
}
