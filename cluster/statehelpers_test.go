package cluster

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protograin/protograin/cluster/state"
	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/boltstore"
	"github.com/protograin/protograin/cluster/storage/memstore"
	"github.com/protograin/protograin/cluster/storage/pgstore/pgtest"
	"github.com/protograin/protograin/cluster/storage/redisstore/redistest"
)

// eachStore runs test with a fresh store the nodes of the test share: a
// memstore, a bbolt file (the embedded store the demo and examples run
// on), PostgreSQL when PROTOGRAIN_POSTGRES_DSN is set (CI sets it
// through .ci/postgres.sh), and a Redis server of the test's own when
// redis-server is installed (CI installs it).
func eachStore(t *testing.T, test func(t *testing.T, store storage.Store)) {
	onMemstore(t, test)
	t.Run("boltstore", func(t *testing.T) {
		s, err := boltstore.Open(filepath.Join(t.TempDir(), "grains.db"), boltstore.Config{})
		if err != nil {
			t.Fatalf("boltstore.Open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		test(t, s)
	})
	t.Run("pgstore", func(t *testing.T) {
		test(t, pgtest.Open(t, 4))
	})
	t.Run("redisstore", func(t *testing.T) {
		test(t, redistest.Open(t))
	})
}

// onMemstore runs test with a fresh memstore, as eachStore's first
// subtest: a test too long to run on every store in the package's run.
func onMemstore(t *testing.T, test func(t *testing.T, store storage.Store)) {
	t.Run("memstore", func(t *testing.T) {
		s := memstore.New()
		t.Cleanup(func() { s.Close() })
		test(t, s)
	})
}

// The account kind: a balance kept as its typed state message (an
// Int64Value), entries set through Put, and methods to exercise every rule
// of state and exactly-once calls.
const (
	accountKind   = "test.Account"
	methodDeposit = "/test.Account/Deposit" // Int64Value amount → Int64Value balance; a negative amount changes state, then fails
	methodBalance = "/test.Account/Balance" // read-only; StringValue → Int64Value balance
	methodPut     = "/test.Account/Put"     // StringValue "key=value" → StringValue; sets an entry (and fails if value is putFails)
	methodGet     = "/test.Account/Get"     // read-only; StringValue key → StringValue value
	methodTouch   = "/test.Account/Touch"   // StringValue → StringValue; changes nothing
	methodPay     = "/test.Account/Pay"     // StringValue target → Int64Value balance; deposits 1 on target twice, then takes 2
	methodFlush   = "/test.Account/Flush"   // StringValue → StringValue; calls State().Flush
	methodRemind  = "/test.Account/Remind"  // StringValue "name=period" → StringValue; registers a reminder due now ("off": unregisters)
)

// bank observes one node's accounts.
type bank struct {
	node     string
	mu       sync.Mutex
	runs     map[string]int // "identity method" → times the method ran
	failPay  atomic.Int64   // Pay calls left that fail after paying
	deaf     atomic.Bool    // OnReminder fails
	reminded chan string    // "node identity name" per reminder delivered
	// farewell, when set, is the entry OnDeactivate sets (to "bye").
	farewell atomic.Pointer[string]
	// lingering makes OnDeactivate wait, after its farewell, until its
	// context ends: a hook that spends all of DeactivateTimeout.
	lingering atomic.Bool
}

func newBank(node string) *bank {
	return &bank{node: node, runs: make(map[string]int), reminded: make(chan string, 1024)}
}

func (b *bank) ran(identity, method string) {
	b.mu.Lock()
	b.runs[identity+" "+method]++
	b.mu.Unlock()
}

// count returns how often method ran on identity's grain on this node.
func (b *bank) count(identity, method string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.runs[identity+" "+method]
}

type account struct {
	b *bank
}

// balanceOf returns the grain's typed state.
func balanceOf(ctx GrainContext) *wrapperspb.Int64Value {
	return ctx.State().Message().(*wrapperspb.Int64Value)
}

// hookDeactivate is what bank.count counts OnDeactivate runs under.
const hookDeactivate = "OnDeactivate"

// OnDeactivate counts its runs, sets the bank's farewell entry, if it has
// one, and lingers if the bank says so.
func (a *account) OnDeactivate(ctx GrainContext) error {
	a.b.ran(ctx.Identity(), hookDeactivate)
	if k := a.b.farewell.Load(); k != nil {
		if err := ctx.State().Set(*k, []byte("bye")); err != nil {
			return err
		}
	}
	if a.b.lingering.Load() {
		<-ctx.Done()
	}
	return nil
}

// OnReminder counts the firing in the balance, so that firings are durable
// state changes too.
func (a *account) OnReminder(ctx GrainContext, name string) error {
	if a.b.deaf.Load() {
		return errors.New("not listening")
	}
	balanceOf(ctx).Value++
	a.b.reminded <- a.b.node + " " + ctx.Identity() + " " + name
	return nil
}

func accountMethod(b *bank, name string, readOnly bool, newReq func() proto.Message,
	h func(ctx GrainContext, req proto.Message) (proto.Message, error)) Method {
	return Method{
		Name:       name,
		NewRequest: newReq,
		ReadOnly:   readOnly,
		Handle: func(_ any, ctx GrainContext, req proto.Message) (proto.Message, error) {
			b.ran(ctx.Identity(), name)
			return h(ctx, req)
		},
	}
}

func newAccountKind(b *bank, name string, mode FlushMode, idle time.Duration) *Kind {
	return &Kind{
		Name:        name,
		IdleTimeout: idle,
		Flush:       mode,
		NewState:    func() proto.Message { return new(wrapperspb.Int64Value) },
		New:         func(string) any { return &account{b: b} },
		Methods: []Method{
			accountMethod(b, methodDeposit, false, newInt64, func(ctx GrainContext, req proto.Message) (proto.Message, error) {
				amount := req.(*wrapperspb.Int64Value).GetValue()
				balanceOf(ctx).Value += amount
				if amount < 0 {
					return nil, errors.New("negative deposit")
				}
				return wrapperspb.Int64(balanceOf(ctx).Value), nil
			}),
			accountMethod(b, methodBalance, true, newString, func(ctx GrainContext, _ proto.Message) (proto.Message, error) {
				return wrapperspb.Int64(balanceOf(ctx).Value), nil
			}),
			accountMethod(b, methodPut, false, newString, func(ctx GrainContext, req proto.Message) (proto.Message, error) {
				k, v, _ := strings.Cut(req.(*wrapperspb.StringValue).GetValue(), "=")
				if err := ctx.State().Set(k, []byte(v)); err != nil {
					return nil, err
				}
				if v == putFails {
					return nil, errors.New("put failed after setting")
				}
				return wrapperspb.String(k), nil
			}),
			accountMethod(b, methodGet, true, newString, func(ctx GrainContext, req proto.Message) (proto.Message, error) {
				v, err := ctx.State().Get(req.(*wrapperspb.StringValue).GetValue())
				if err != nil {
					return nil, err
				}
				return wrapperspb.String(string(v)), nil
			}),
			accountMethod(b, methodTouch, false, newString, func(ctx GrainContext, req proto.Message) (proto.Message, error) {
				return req, nil
			}),
			accountMethod(b, methodPay, false, newString, func(ctx GrainContext, req proto.Message) (proto.Message, error) {
				for range 2 {
					call := Call{Kind: name, Identity: req.(*wrapperspb.StringValue).GetValue(), Method: methodDeposit,
						Request: wrapperspb.Int64(1), NewResponse: newInt64}
					if _, err := ctx.Invoke(ctx, call); err != nil {
						return nil, err
					}
				}
				if b.failPay.Add(-1) >= 0 {
					return nil, errors.New("failed after paying")
				}
				balanceOf(ctx).Value -= 2
				return wrapperspb.Int64(balanceOf(ctx).Value), nil
			}),
			accountMethod(b, methodFlush, false, newString, func(ctx GrainContext, req proto.Message) (proto.Message, error) {
				if err := ctx.State().Flush(ctx); err != nil {
					return nil, err
				}
				return req, nil
			}),
			accountMethod(b, methodRemind, false, newString, func(ctx GrainContext, req proto.Message) (proto.Message, error) {
				name, period, _ := strings.Cut(req.(*wrapperspb.StringValue).GetValue(), "=")
				if period == "off" {
					if err := UnregisterReminder(ctx, name); err != nil {
						return nil, err
					}
					return req, nil
				}
				d, err := time.ParseDuration(period)
				if err != nil {
					return nil, err
				}
				if err := RegisterReminder(ctx, name, 0, d); err != nil {
					return nil, err
				}
				return req, nil
			}),
		},
	}
}

// bankCluster starts size nodes that host accountKind (and manualKind, in
// FlushManual mode) over one shared store.
func bankCluster(t *testing.T, size int, store storage.Store, idle time.Duration, configure func(*Config)) ([]*Node, map[string]*bank) {
	t.Helper()
	banks := make(map[string]*bank)
	nodes := startCluster(t, size, func(name string) []*Kind {
		b := newBank(name)
		banks[name] = b
		return []*Kind{newAccountKind(b, accountKind, FlushAfterCall, idle), newAccountKind(b, manualKind, FlushManual, idle)}
	}, func(cfg *Config) {
		cfg.Store = store
		if configure != nil {
			configure(cfg)
		}
	})
	return nodes, banks
}

const manualKind = "test.ManualAccount"

// putFails is the value that makes Put fail after setting it.
const putFails = "!fail"

func depositCall(kind, identity string, amount int64) Call {
	return Call{Kind: kind, Identity: identity, Method: methodDeposit, Request: wrapperspb.Int64(amount), NewResponse: newInt64}
}

func accountCall(kind, method, identity, arg string) Call {
	resp := newString
	if method == methodBalance || method == methodPay {
		resp = newInt64
	}
	return Call{Kind: kind, Identity: identity, Method: method, Request: wrapperspb.String(arg), NewResponse: resp}
}

// deposit deposits amount and returns the balance.
func deposit(t *testing.T, c Caller, kind, identity string, amount int64, opts ...CallOption) int64 {
	t.Helper()
	resp, err := c.Invoke(context.Background(), depositCall(kind, identity, amount), opts...)
	if err != nil {
		t.Fatalf("Deposit(%s, %d): %v", identity, amount, err)
	}
	return resp.(*wrapperspb.Int64Value).GetValue()
}

// balance reads the balance through the read-only method.
func balance(t *testing.T, c Caller, kind, identity string) int64 {
	t.Helper()
	resp, err := c.Invoke(context.Background(), accountCall(kind, methodBalance, identity, ""))
	if err != nil {
		t.Fatalf("Balance(%s): %v", identity, err)
	}
	return resp.(*wrapperspb.Int64Value).GetValue()
}

// storedBalance reads the committed balance from the store, as a new
// activation would load it.
func storedBalance(t *testing.T, store storage.Store, kind, identity string) int64 {
	t.Helper()
	b, err := state.Load(context.Background(), store, storage.Key{Kind: kind, Identity: identity}, state.Config{})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := b.Message()
	var v wrapperspb.Int64Value
	if err := proto.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v.GetValue()
}

// storedVersion returns the grain's committed version.
func storedVersion(t *testing.T, store storage.Store, kind, identity string) storage.Version {
	t.Helper()
	_, v, err := store.Load(context.Background(), storage.Key{Kind: kind, Identity: identity})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// accountOwnedBy returns an identity of kind that owner owns.
func accountOwnedBy(t *testing.T, owner *Node, kind, prefix string) string {
	t.Helper()
	for i := range 10000 {
		id := fmt.Sprintf("%s-%d", prefix, i)
		if m, ok := owner.Owner(kind, id); ok && m.Name == owner.Name() {
			return id
		}
	}
	t.Fatalf("no identity owned by %s", owner.Name())
	return ""
}

// totalRuns sums how often method ran on identity across the banks.
func totalRuns(banks map[string]*bank, identity, method string) int {
	n := 0
	for _, b := range banks {
		n += b.count(identity, method)
	}
	return n
}

// hookedStore wraps a store so that tests can fail loads, count commits and
// hold a grain's commits.
type hookedStore struct {
	storage.Store
	loadErr   atomic.Pointer[error]
	commitErr atomic.Pointer[error]
	loads     atomic.Int64
	commits   atomic.Int64
	holdKey   atomic.Pointer[storage.Key] // commits of this grain block until their ctx ends or release closes
	holding   chan struct{}               // a held commit started
	release   chan struct{}               // closed: held commits go through

	// beforeCommit, when set, runs first in every Commit, before commitErr
	// is read: a test holds a commit there, then lets it fail or not.
	beforeCommit atomic.Pointer[func()]
}

// hookedMemstore returns a hookedStore over a memstore of the test's own.
func hookedMemstore(t *testing.T) *hookedStore {
	s := memstore.New()
	t.Cleanup(func() { s.Close() })
	return newHookedStore(s)
}

func newHookedStore(s storage.Store) *hookedStore {
	return &hookedStore{Store: s, holding: make(chan struct{}, 16), release: make(chan struct{})}
}

func (s *hookedStore) Load(ctx context.Context, key storage.Key) (map[string][]byte, storage.Version, error) {
	s.loads.Add(1)
	if err := s.loadErr.Load(); err != nil {
		return nil, 0, *err
	}
	return s.Store.Load(ctx, key)
}

func (s *hookedStore) Commit(ctx context.Context, key storage.Key, expected storage.Version, changes []storage.Change) (storage.Version, error) {
	s.commits.Add(1)
	if f := s.beforeCommit.Load(); f != nil {
		(*f)()
	}
	if err := s.commitErr.Load(); err != nil {
		return 0, *err
	}
	if k := s.holdKey.Load(); k != nil && *k == key {
		s.holding <- struct{}{}
		select {
		case <-ctx.Done(): // the node crashes meanwhile: nothing reaches the store
			return 0, ctx.Err()
		case <-s.release:
		}
	}
	return s.Store.Commit(ctx, key, expected, changes)
}

// errStoreDown is an error of a store that is down.
var errStoreDown = errors.New("store down")

// wantSameActivation fails the test unless n still runs the one activation
// it had when store had made loads loads: none was loaded since, and none
// is gone. after says what happened meanwhile.
func wantSameActivation(t *testing.T, n *Node, store *hookedStore, loads int64, after string) {
	t.Helper()
	if got := store.loads.Load() - loads; got != 0 || n.acts.count() != 1 {
		t.Fatalf("%d loads and %d activations after %s, want the same activation (0 loads, 1)", got, n.acts.count(), after)
	}
}
