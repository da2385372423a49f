package cluster

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protograin/protograin/cluster/storage"
)

// The tick kind: grains whose only business is their reminders, each
// firing recorded with the node it ran on and when.
const (
	tickKind   = "test.Tick"
	methodTick = "/test.Tick/Remind" // StringValue "name=period,...": registers each reminder due after its period ("name=off": unregisters) → StringValue: the node that did it
	// methodTickHeld is methodTick once tickLog.hold is closed; it
	// reports on tickLog.entered that it waits.
	methodTickHeld = "/test.Tick/RemindHeld"
)

// tickFiring is one run of OnReminder.
type tickFiring struct {
	node       string
	start, end time.Time
}

// tickLog records the firings of the tick grains of every node of a test.
type tickLog struct {
	mu    sync.Mutex
	fired map[string][]tickFiring // "identity name" → its firings, as they ended

	hold    chan struct{} // methodTickHeld waits until it is closed
	entered chan string   // methodTickHeld sends its grain's identity as it waits
}

func newTickLog() *tickLog {
	return &tickLog{fired: make(map[string][]tickFiring), hold: make(chan struct{}), entered: make(chan string, 1024)}
}

func (l *tickLog) record(key string, f tickFiring) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fired[key] = append(l.fired[key], f)
}

// firings returns the firings of key in the order they began.
func (l *tickLog) firings(key string) []tickFiring {
	l.mu.Lock()
	fs := slices.Clone(l.fired[key])
	l.mu.Unlock()
	sort.Slice(fs, func(i, j int) bool { return fs[i].start.Before(fs[j].start) })
	return fs
}

// firedSince returns how many firings of key began after since.
func (l *tickLog) firedSince(key string, since time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, f := range l.fired[key] {
		if f.start.After(since) {
			n++
		}
	}
	return n
}

type ticker struct {
	node string
	log  *tickLog
}

// OnReminder records the firing. It changes no state: what is tested is
// the scheduler, not the grain's commits.
func (g *ticker) OnReminder(ctx GrainContext, name string) error {
	start := time.Now()
	g.log.record(ctx.Identity()+" "+name, tickFiring{node: g.node, start: start, end: time.Now()})
	return nil
}

func newTickKind(node string, log *tickLog) *Kind {
	remind := func(_ any, ctx GrainContext, req proto.Message) (proto.Message, error) {
		for _, change := range strings.Split(req.(*wrapperspb.StringValue).GetValue(), ",") {
			name, period, _ := strings.Cut(change, "=")
			if period == "off" {
				if err := UnregisterReminder(ctx, name); err != nil {
					return nil, err
				}
				continue
			}
			d, err := time.ParseDuration(period)
			if err != nil {
				return nil, err
			}
			if err := RegisterReminder(ctx, name, d, d); err != nil {
				return nil, err
			}
		}
		return wrapperspb.String(node), nil
	}
	held := func(g any, ctx GrainContext, req proto.Message) (proto.Message, error) {
		log.entered <- ctx.Identity()
		<-log.hold
		return remind(g, ctx, req)
	}
	return &Kind{
		Name: tickKind,
		New:  func(string) any { return &ticker{node: node, log: log} },
		Methods: []Method{
			{Name: methodTick, NewRequest: newString, Handle: remind},
			{Name: methodTickHeld, NewRequest: newString, Handle: held},
		},
	}
}

// tickCluster is a gateway that hosts no kind and members that host the
// tick kind and the bank's kinds (for rollingLoad) over one store.
type tickCluster struct {
	log     *tickLog
	gateway *Node
	members []*Node  // each member's latest start
	configs []Config // each member's config, to start it again under its name
	// sameAddrs restarts a member at its previous start's addresses, as
	// rollingCluster does.
	sameAddrs bool
}

func startTickCluster(t *testing.T, store storage.Store, size int) *tickCluster {
	cfg := testConfig(t)
	cfg.NodeName += "-gateway"
	cfg.Store = store
	tc := &tickCluster{log: newTickLog(), gateway: startNode(t, cfg)}
	for range size {
		tc.members = append(tc.members, startNode(t, tc.config(t, len(tc.configs))))
	}
	waitConverged(t, tc.all(), size+1)
	return tc
}

// config returns the config of member i, a new one, and keeps it.
func (tc *tickCluster) config(t *testing.T, i int) Config {
	cfg := testConfig(t)
	cfg.NodeName += fmt.Sprintf("-m%d", i)
	cfg.Store = tc.gateway.store
	cfg.Seeds = []string{tc.gateway.GossipAddr()}
	cfg.Kinds = append(countedBankKinds(newBank(cfg.NodeName), time.Hour), newTickKind(cfg.NodeName, tc.log))
	tc.configs = append(tc.configs, cfg)
	return cfg
}

func (tc *tickCluster) all() []*Node { return append([]*Node{tc.gateway}, tc.members...) }

// restart stops member i, by Shutdown or, if crash, by Close, and starts
// it again under its name, at new addresses or, if tc.sameAddrs, at its
// previous start's, then waits until every node has the new start, as a
// rolling deploy does (see rollingCluster.restart).
func (tc *tickCluster) restart(t *testing.T, load *rollingLoad, i int, crash bool) {
	t.Helper()
	old := tc.members[i]
	stopMember(t, old, crash)
	cfg := &tc.configs[slices.IndexFunc(tc.configs, func(c Config) bool { return c.NodeName == old.Name() })]
	if tc.sameAddrs {
		cfg.BindAddr, cfg.GRPCAddr = old.GossipAddr(), old.GRPCAddr()
	}
	again := startAgain(t, *cfg)
	tc.members[i] = again
	load.replace(i, again)
	awaitNewStart(t, tc.all(), again)
	waitConverged(t, tc.all(), len(tc.members)+1)
}

// joinAtOnce starts count new members at the same moment, and waits until
// every node sees them all.
func (tc *tickCluster) joinAtOnce(t *testing.T, count int) {
	t.Helper()
	cfgs := make([]Config, count)
	for i := range cfgs {
		cfgs[i] = tc.config(t, len(tc.configs))
	}
	tc.members = append(tc.members, startAtOnce(t, cfgs)...)
	waitConverged(t, tc.all(), len(tc.members)+1)
}

// leaveAtOnce shuts the members at the given indexes down at the same
// moment, gracefully, and waits until every node that stays sees them
// gone.
func (tc *tickCluster) leaveAtOnce(t *testing.T, indexes ...int) {
	t.Helper()
	tc.members = shutdownAtOnce(t, tc.members, indexes)
	waitConverged(t, tc.all(), len(tc.members)+1)
}

// remindThrough registers (period) or unregisters ("off") the reminder
// name of the tick grain identity through the gateway, trying again after
// the failures the documents give for a cluster whose members change
// (rollingFailure; both are idempotent), until it is acknowledged. It
// returns the node that did it, or an error for an undocumented failure
// or one not acknowledged within waitTimeout.
func (tc *tickCluster) remindThrough(identity, name, period string) (string, error) {
	giveUp := time.Now().Add(waitTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), rollingCallTimeout)
		resp, err := tc.gateway.Invoke(ctx, Call{Kind: tickKind, Identity: identity, Method: methodTick,
			Request: wrapperspb.String(name + "=" + period), NewResponse: newString})
		cancel()
		switch {
		case err == nil:
			return resp.(*wrapperspb.StringValue).GetValue(), nil
		case rollingFailure(err) == "":
			return "", fmt.Errorf("Remind(%s, %s=%s) failed with an undocumented error: %w", identity, name, period, err)
		case time.Now().After(giveUp):
			return "", fmt.Errorf("Remind(%s, %s=%s) not acknowledged in %v: %w", identity, name, period, waitTimeout, err)
		}
	}
}

// tickOp is a change of a churned reminder, as its caller saw it: sent
// at sent, acknowledged at acked by node.
type tickOp struct {
	off         bool
	node        string
	sent, acked time.Time
}

// tickChurn registers and unregisters the reminder "x" of the grains
// "c-i" in turn, one caller per grain, until stopped; each grain also has
// a steady reminder "y". After each registration it waits, within
// churnWait, for a firing of the reminder registered: a registration must
// not be lost, nor stay unfired for longer than a move takes, whatever
// the members do meanwhile. After each unregistration it waits for two
// firings of y, which leaves x time to fire wrongly.
type tickChurn struct {
	tc     *tickCluster
	period time.Duration

	mu  sync.Mutex
	ops map[string][]tickOp // by identity

	stop chan struct{}
	done chan struct{}
}

func (c *tickChurn) run(t *testing.T, grains int, churnWait time.Duration) {
	go func() {
		defer close(c.done)
		concurrently(t, grains, func(g int) error {
			id := fmt.Sprintf("c-%d", g)
			if _, err := c.tc.remindThrough(id, "y", c.period.String()); err != nil {
				return err
			}
			for off := false; ; off = !off {
				select {
				case <-c.stop:
					return nil
				default:
				}
				period := c.period.String()
				if off {
					period = "off"
				}
				sent := time.Now()
				node, err := c.tc.remindThrough(id, "x", period)
				if err != nil {
					return err
				}
				acked := time.Now()
				c.mu.Lock()
				c.ops[id] = append(c.ops[id], tickOp{off: off, node: node, sent: sent, acked: acked})
				c.mu.Unlock()
				// Conditions with a deadline, not sleeps: after a
				// registration, the firing of the reminder registered;
				// after an unregistration, two firings of the grain's
				// steady reminder y, two periods in which x must not
				// fire.
				key, want := id+" x", 1
				if off {
					key, want = id+" y", 2
				}
				deadline := time.Now().Add(churnWait)
				for c.tc.log.firedSince(key, acked) < want {
					if time.Now().After(deadline) {
						return fmt.Errorf("reminder %s, after %s changed x at %s, did not fire %d times within %v%s",
							key, node, acked.Format("15:04:05.000"), want, churnWait, c.tc.history(key))
					}
					select {
					case <-c.stop:
						return nil
					case <-time.After(5 * time.Millisecond):
					}
				}
			}
		})
	}()
}

// history lists the firings of key, for failure messages.
func (tc *tickCluster) history(key string) string {
	var b strings.Builder
	for _, f := range tc.log.firings(key) {
		fmt.Fprintf(&b, "\n\tfired on %s at %s", f.node, f.start.Format("15:04:05.000"))
	}
	return b.String()
}

// TestRemindersThroughARollingRestartAndAScaleOutAndIn registers a
// reminder with a short period on a hundred grains, and has more
// grains register and unregister a reminder in turn without pause, while
// the members are restarted in turn under their names (gracefully, the
// middle one crashed), then three members join at once and three leave at
// once; the deposits of rollingLoad keep the members busy meanwhile. On
// every store, it checks what state.md promises for reminders:
//
//   - No registration is lost, nor unfired for longer than a move takes:
//     each churned registration fires within churnWait of its
//     acknowledgement, and no steady reminder goes longer than maxGap
//     without a firing, through all the changes.
//   - Every reminder still registered after the last change fires again,
//     twice, the first time within maxGap of that change.
//   - A reminder unregistered does not fire after the unregistration was
//     acknowledged on the node that unregistered it, and at most once on
//     another node ("Unregistering stops firings on the node that
//     unregisters. Another node that owns the grain in its view at that
//     moment (ownership moving) may still deliver it once").
//
// Firings of one reminder on two nodes at once are allowed (state.md,
// "Exactly-once firing"), and only counted.
//
// A node that did not list the reminders on a membership change, nor at a
// leaver's farewell, fails it (a steady reminder waits some thirteen
// seconds, for the listing DeactivateTimeout after a leave); so does a
// scheduler that kept a reminder this node unregistered.
//
// 100 steady grains and 10 churned ones, with one round of restarts, run
// in the package's run; REMINDER_ROLL_ROUNDS=n restarts every member n
// times, with 300 steady grains and 30 churned ones, for a soak:
//
//	REMINDER_ROLL_ROUNDS=5 go test -race -run TestRemindersThroughARollingRestartAndAScaleOutAndIn ./cluster
//
// The soak also restarts each member at its previous start's addresses,
// as TestGrainStateThroughARollingRestart's last variants do.
func TestRemindersThroughARollingRestartAndAScaleOutAndIn(t *testing.T) {
	t.Parallel()
	rounds, steady, churned := 1, 100, 10
	if v := os.Getenv("REMINDER_ROLL_ROUNDS"); v != "" {
		if _, err := fmt.Sscan(v, &rounds); err != nil {
			t.Fatalf("REMINDER_ROLL_ROUNDS: %v", err)
		}
		steady, churned = 300, 30
	}
	eachStore(t, func(t *testing.T, store storage.Store) {
		remindersThroughChanges(t, store, rounds, steady, churned, false)
	})
	if os.Getenv("REMINDER_ROLL_ROUNDS") != "" {
		t.Run("at_the_same_addresses", func(t *testing.T) {
			eachStore(t, func(t *testing.T, store storage.Store) {
				remindersThroughChanges(t, store, rounds, steady, churned, true)
			})
		})
	}
}

// remindersThroughChanges is TestRemindersThroughARollingRestartAndAScaleOutAndIn
// over store, with rounds of restarts, steady grains with a reminder, and
// churned grains that register and unregister one.
func remindersThroughChanges(t *testing.T, store storage.Store, rounds, steady, churned int, sameAddrs bool) {
	const (
		members = 3
		period  = 200 * time.Millisecond
		// How long a move may keep a reminder from firing: a crashed
		// member's grains move once the gossip finds it failed, and its
		// new start waits for its name until then.
		maxGap    = 10 * time.Second
		churnWait = maxGap
		between   = 20 // deposits
	)
	tc := startTickCluster(t, store, members)
	tc.sameAddrs = sameAddrs
	load := newRollingLoad(t, tc.gateway, tc.members, 1, 50)

	concurrently(t, steady, func(i int) error {
		_, err := tc.remindThrough(fmt.Sprintf("s-%d", i), "r", period.String())
		return err
	})
	registered := time.Now()
	churn := &tickChurn{tc: tc, period: period, ops: make(map[string][]tickOp), stop: make(chan struct{}), done: make(chan struct{})}
	churn.run(t, churned, churnWait)
	stopChurn := sync.OnceFunc(func() { close(churn.stop); <-churn.done })
	t.Cleanup(stopChurn)
	load.progress(t, "deposits before the changes", between)

	for r := range rounds {
		for i := range members {
			tc.restart(t, load, i, r == 0 && i == 1)
			load.progress(t, fmt.Sprintf("deposits after %s's restart", tc.members[i].Name()), between)
		}
	}
	tc.joinAtOnce(t, 3)
	load.progress(t, "deposits after the joins", between)
	tc.leaveAtOnce(t, 0, 1, 3)
	last := time.Now()
	load.progress(t, "deposits after the leaves", between)
	stopChurn()
	load.finish()

	// Every reminder still registered fires again, twice.
	var still []string
	for i := range steady {
		still = append(still, fmt.Sprintf("s-%d r", i))
	}
	churn.mu.Lock()
	for id, ops := range churn.ops {
		still = append(still, id+" y")
		if !ops[len(ops)-1].off {
			still = append(still, id+" x")
		}
	}
	churn.mu.Unlock()
	for _, key := range still {
		waitFor(t, waitTimeout, "reminder "+key+" to fire twice after the last change", func() bool {
			return tc.log.firedSince(key, last) >= 2
		})
	}

	// No steady reminder went longer than maxGap without a firing, and
	// the first firing after the last change came within maxGap of it.
	var worst time.Duration
	var worstKey string
	for _, key := range still[:steady] {
		fs := tc.log.firings(key)
		prev := registered
		for _, f := range fs {
			if gap := f.start.Sub(prev); gap > worst {
				worst, worstKey = gap, key
			}
			prev = f.start
		}
	}
	if worst > maxGap {
		t.Errorf("reminder %s went %v without a firing, over the %v a move may take%s", worstKey, worst, maxGap, tc.history(worstKey))
	}

	// Unregistered reminders: no firing after the acknowledgement on the
	// node that unregistered, at most one on another node, until the
	// next registration was sent.
	churn.mu.Lock()
	defer churn.mu.Unlock()
	unregistered := 0
	for id, ops := range churn.ops {
		fs := tc.log.firings(id + " x")
		for i, op := range ops {
			if !op.off {
				continue
			}
			unregistered++
			until := time.Now()
			if i+1 < len(ops) {
				until = ops[i+1].sent
			}
			elsewhere := 0
			for _, f := range fs {
				if !f.start.After(op.acked) || !f.start.Before(until) {
					continue
				}
				if f.node == op.node {
					t.Errorf("reminder x of %s fired on %s at %s, after %s acknowledged its unregistration at %s",
						id, f.node, f.start.Format("15:04:05.000"), op.node, op.acked.Format("15:04:05.000"))
				} else if elsewhere++; elsewhere > 1 {
					t.Errorf("reminder x of %s fired %d times on other nodes than %s after it acknowledged its unregistration at %s%s",
						id, elsewhere, op.node, op.acked.Format("15:04:05.000"), tc.history(id+" x"))
				}
			}
		}
	}

	// Firings of one reminder that overlapped on two nodes: allowed.
	overlaps, total := 0, 0
	tc.log.mu.Lock()
	for _, fs := range tc.log.fired {
		total += len(fs)
		for i, a := range fs {
			for _, b := range fs[i+1:] {
				if a.node != b.node && a.start.Before(b.end) && b.start.Before(a.end) {
					overlaps++
				}
			}
		}
	}
	tc.log.mu.Unlock()
	if unregistered == 0 {
		t.Errorf("no reminder was unregistered: the churn tested nothing")
	}
	t.Logf("%d firings; longest gap of a steady reminder %v (%s); %d unregistrations checked; %d firings overlapped on two nodes; %d deposits, failed attempts %v",
		total, worst, worstKey, unregistered, overlaps, load.deposits.Load(), load.failures)
}
