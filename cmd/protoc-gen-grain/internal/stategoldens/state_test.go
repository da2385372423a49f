package stategoldens

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/protograin/protograin/cluster"
	"github.com/protograin/protograin/cluster/state"
	"github.com/protograin/protograin/testdata/manualflush"
	"github.com/protograin/protograin/testdata/readonly"
	gstate "github.com/protograin/protograin/testdata/state"
	"github.com/protograin/protograin/testdata/stateclash"
	"github.com/protograin/protograin/testdata/stateimport"
	"github.com/protograin/protograin/testdata/stateimport/statepb"
	"google.golang.org/protobuf/proto"
)

// account implements the state golden's Account: its balance and history
// live in the typed state message, with no casts.
type account struct {
	gstate.UnimplementedAccountGrain
}

func (account) Deposit(ctx cluster.GrainContext, req *gstate.DepositRequest) (*gstate.BalanceResponse, error) {
	st := gstate.AccountStateOf(ctx)
	st.Balance += req.GetAmount()
	st.History = append(st.History, req.GetMemo())
	return &gstate.BalanceResponse{Balance: st.GetBalance()}, nil
}

func (account) Balance(ctx cluster.GrainContext, _ *gstate.BalanceRequest) (*gstate.BalanceResponse, error) {
	return &gstate.BalanceResponse{Balance: gstate.AccountStateOf(ctx).GetBalance()}, nil
}

func newAccountKind() *cluster.Kind {
	return gstate.NewAccountKind(func(string) gstate.AccountGrain { return account{} })
}

func TestTypedStateSamePackage(t *testing.T) {
	n := newNode(newAccountKind())
	ctx := context.Background()
	alice := gstate.NewAccountClient(n, "alice")
	key := grainKey{gstate.AccountKind, "alice"}

	for _, amount := range []int64{5, 7} {
		if _, err := alice.Deposit(ctx, &gstate.DepositRequest{Amount: amount, Memo: "d"}); err != nil {
			t.Fatal(err)
		}
	}
	if got := n.committed(key); got.commits != 2 || got.flushes != 2 {
		t.Errorf("%d commits in %d flushes, want one after each Deposit (flush after call)", got.commits, got.flushes)
	}
	balance, err := alice.Balance(ctx, &gstate.BalanceRequest{})
	if err != nil || balance.GetBalance() != 12 {
		t.Fatalf("Balance = %v, %v; want 12", balance, err)
	}
	if got := n.committed(key); got.flushes != 2 {
		t.Errorf("%d flushes after Balance, want still 2: a read-only call is not flushed", got.flushes)
	}

	// The state survives deactivation: it is loaded into a new message from
	// the Kind's NewState.
	if err := n.deactivate(key); err != nil {
		t.Fatal(err)
	}
	if balance, err := alice.Balance(ctx, &gstate.BalanceRequest{}); err != nil || balance.GetBalance() != 12 {
		t.Fatalf("Balance after reactivation = %v, %v; want 12", balance, err)
	}
	want := &gstate.AccountState{Balance: 12, History: []string{"d", "d"}}
	if got := committedMessage(t, n, newAccountKind(), key); !proto.Equal(got, want) {
		t.Errorf("committed state %v, want %v", got, want)
	}
	if got := n.committed(grainKey{gstate.AccountKind, "bob"}); got.message != nil {
		t.Errorf("bob has state %x without a call", got.message)
	}
}

type ledger struct {
	stateimport.UnimplementedLedgerGrain
}

func (ledger) Post(ctx cluster.GrainContext, req *stateimport.PostRequest) (*stateimport.PostResponse, error) {
	st := stateimport.LedgerStateOf(ctx) // *statepb.LedgerState, from another Go package
	if st.Totals == nil {
		st.Totals = map[string]int64{}
	}
	st.Totals[req.GetAccount()] += req.GetAmount()
	return &stateimport.PostResponse{Total: st.Totals[req.GetAccount()]}, nil
}

func TestTypedStateFromImportedPackage(t *testing.T) {
	kind := stateimport.NewLedgerKind(func(string) stateimport.LedgerGrain { return ledger{} })
	n := newNode(kind)
	client := stateimport.NewLedgerClient(n, "books")
	for _, post := range []*stateimport.PostRequest{{Account: "a", Amount: 3}, {Account: "b", Amount: 1}, {Account: "a", Amount: 4}} {
		if _, err := client.Post(context.Background(), post); err != nil {
			t.Fatal(err)
		}
	}
	want := &statepb.LedgerState{Totals: map[string]int64{"a": 7, "b": 1}}
	if got := committedMessage(t, n, kind, grainKey{stateimport.LedgerKind, "books"}); !proto.Equal(got, want) {
		t.Errorf("committed state %v, want %v", got, want)
	}
}

// batch implements manualflush's Batch: items wait in its state message
// until Commit flushes them.
type batch struct {
	manualflush.UnimplementedBatchGrain
}

func (batch) Add(ctx cluster.GrainContext, item *manualflush.Item) (*manualflush.Size, error) {
	st := manualflush.BatchStateOf(ctx)
	st.Items = append(st.Items, item.GetText())
	return &manualflush.Size{Count: int32(len(st.Items))}, nil
}

func (batch) Commit(ctx cluster.GrainContext, _ *manualflush.Empty) (*manualflush.Size, error) {
	if err := ctx.State().Flush(ctx); err != nil {
		return nil, err
	}
	return &manualflush.Size{Count: int32(len(manualflush.BatchStateOf(ctx).GetItems()))}, nil
}

// journal implements manualflush's Journal, which has only key/value state.
type journal struct {
	manualflush.UnimplementedJournalGrain
}

func (journal) Write(ctx cluster.GrainContext, item *manualflush.Item) (*manualflush.Size, error) {
	if err := ctx.State().Set(item.GetText(), []byte(strings.ToUpper(item.GetText()))); err != nil {
		return nil, err
	}
	return &manualflush.Size{Count: int32(len(ctx.State().Keys()))}, nil
}

func (journal) Read(ctx cluster.GrainContext, item *manualflush.Item) (*manualflush.Item, error) {
	v, err := ctx.State().Get(item.GetText())
	if err != nil {
		return nil, err
	}
	return &manualflush.Item{Text: string(v)}, nil
}

func TestManualFlush(t *testing.T) {
	batchKind := manualflush.NewBatchKind(func(string) manualflush.BatchGrain { return batch{} })
	journalKind := manualflush.NewJournalKind(func(string) manualflush.JournalGrain { return journal{} })
	n := newNode(batchKind, journalKind)
	ctx := context.Background()

	t.Run("typed state", func(t *testing.T) {
		client := manualflush.NewBatchClient(n, "b")
		key := grainKey{manualflush.BatchKind, "b"}
		for _, text := range []string{"x", "y"} {
			if _, err := client.Add(ctx, &manualflush.Item{Text: text}); err != nil {
				t.Fatal(err)
			}
		}
		if got := n.committed(key); got.flushes != 0 {
			t.Fatalf("%d flushes after Add, want none: the kind flushes manually", got.flushes)
		}
		if size, err := client.Commit(ctx, &manualflush.Empty{}); err != nil || size.GetCount() != 2 {
			t.Fatalf("Commit = %v, %v; want 2 items", size, err)
		}
		want := &manualflush.BatchState{Items: []string{"x", "y"}}
		if got := committedMessage(t, n, batchKind, key); !proto.Equal(got, want) {
			t.Errorf("committed state %v, want %v", got, want)
		}
	})
	t.Run("key/value state", func(t *testing.T) {
		client := manualflush.NewJournalClient(n, "j")
		key := grainKey{manualflush.JournalKind, "j"}
		if _, err := client.Write(ctx, &manualflush.Item{Text: "a"}); err != nil {
			t.Fatal(err)
		}
		if got, err := client.Read(ctx, &manualflush.Item{Text: "a"}); err != nil || got.GetText() != "A" {
			t.Fatalf("Read = %v, %v; want the buffered write A", got, err)
		}
		if got := n.committed(key); got.flushes != 0 {
			t.Fatalf("%d flushes before deactivation, want none", got.flushes)
		}
		if err := n.deactivate(key); err != nil {
			t.Fatal(err)
		}
		if got := n.committed(key); !reflect.DeepEqual(got.entries, map[string][]byte{"a": []byte("A")}) || got.message != nil {
			t.Errorf("committed %q and message %x, want entry a=A and no message", got.entries, got.message)
		}
		_, err := client.Read(ctx, &manualflush.Item{Text: "missing"})
		if !errors.Is(err, state.ErrNotFound) {
			t.Errorf("Read of a missing key: %v, want state.ErrNotFound", err)
		}
	})
}

func TestStateOfOutsideItsKind(t *testing.T) {
	journalCtx := grainContext{Context: context.Background(), key: grainKey{manualflush.JournalKind, "j"}, state: &memState{}}
	if got := gstate.AccountStateOf(journalCtx); got != nil {
		t.Errorf("AccountStateOf a context without typed state = %v, want nil", got)
	}
	otherCtx := grainContext{Context: context.Background(), state: &memState{message: &manualflush.BatchState{}}}
	if got := gstate.AccountStateOf(otherCtx); got != nil {
		t.Errorf("AccountStateOf a context holding another kind's state = %v, want nil", got)
	}
	if got := gstate.AccountStateOf(grainContext{Context: context.Background()}); got != nil {
		t.Errorf("AccountStateOf a context with no State = %v, want nil", got)
	}
	mine := &gstate.AccountState{Balance: 1}
	if got := gstate.AccountStateOf(grainContext{Context: context.Background(), state: &memState{message: mine}}); got != mine {
		t.Errorf("AccountStateOf = %p, want the state's own message %p", got, mine)
	}
}

type vault struct {
	stateclash.UnimplementedVaultGrain
}

func (vault) Open(ctx cluster.GrainContext, req *stateclash.VaultStateOf) (*stateclash.VaultStateOf, error) {
	st := stateclash.VaultStateOf_(ctx) // renamed: VaultStateOf is a message
	if req.GetOpen() {
		st.Opened++
	}
	return &stateclash.VaultStateOf{Open: st.GetOpened() > 0}, nil
}

func TestStateAccessorRenamedForClash(t *testing.T) {
	kind := stateclash.NewVaultKind(func(string) stateclash.VaultGrain { return vault{} })
	n := newNode(kind)
	resp, err := stateclash.NewVaultClient(n, "v").Open(context.Background(), &stateclash.VaultStateOf{Open: true})
	if err != nil || !resp.GetOpen() {
		t.Fatalf("Open = %v, %v; want open", resp, err)
	}
	if got := committedMessage(t, n, kind, grainKey{stateclash.VaultKind, "v"}); !proto.Equal(got, &stateclash.Locker_State{Opened: 1}) {
		t.Errorf("committed state %v, want opened 1", got)
	}
}

// TestKindFields checks what each golden's Kind tells the cluster, field by
// field, including the zero values of kinds without options.
func TestKindFields(t *testing.T) {
	tests := []struct {
		kind     *cluster.Kind
		state    proto.Message // NewState's type; nil for no NewState
		flush    cluster.FlushMode
		readOnly []string // the methods marked ReadOnly, by full name
	}{
		{newAccountKind(), &gstate.AccountState{}, cluster.FlushAfterCall, []string{gstate.AccountBalanceMethod}},
		{stateimport.NewLedgerKind(nil), &statepb.LedgerState{}, cluster.FlushAfterCall, nil},
		{manualflush.NewBatchKind(nil), &manualflush.BatchState{}, cluster.FlushManual, nil},
		{manualflush.NewJournalKind(nil), nil, cluster.FlushManual, []string{manualflush.JournalReadMethod}},
		{readonly.NewCatalogKind(nil), nil, cluster.FlushAfterCall, []string{readonly.CatalogGetMethod, readonly.CatalogListMethod}},
		{stateclash.NewVaultKind(nil), &stateclash.Locker_State{}, cluster.FlushAfterCall, nil},
	}
	for _, tt := range tests {
		t.Run(tt.kind.Name, func(t *testing.T) {
			switch {
			case tt.state == nil && tt.kind.NewState != nil:
				t.Errorf("NewState is set, want nil: the service names no state message")
			case tt.state != nil && tt.kind.NewState == nil:
				t.Errorf("NewState is nil, want one returning %T", tt.state)
			case tt.state != nil:
				a, b := tt.kind.NewState(), tt.kind.NewState()
				if reflect.TypeOf(a) != reflect.TypeOf(tt.state) || a == b {
					t.Errorf("NewState returns %T (a new one each time: %v), want a new %T", a, a != b, tt.state)
				}
			}
			if tt.kind.Flush != tt.flush {
				t.Errorf("Flush %v, want %v", tt.kind.Flush, tt.flush)
			}
			var readOnly []string
			for _, m := range tt.kind.Methods {
				if m.ReadOnly {
					readOnly = append(readOnly, m.Name)
				}
			}
			if !slices.Equal(readOnly, tt.readOnly) {
				t.Errorf("read-only methods %v, want %v", readOnly, tt.readOnly)
			}
		})
	}
}

// catalog implements readonly's Catalog with a read-only method that reads
// key/value state.
type catalog struct {
	readonly.UnimplementedCatalogGrain
}

func (catalog) Get(ctx cluster.GrainContext, req *readonly.GetRequest) (*readonly.Product, error) {
	name, _ := ctx.State().TryGet(req.GetSku())
	return &readonly.Product{Sku: req.GetSku(), Name: string(name)}, nil
}

func (catalog) Put(ctx cluster.GrainContext, p *readonly.Product) (*readonly.Product, error) {
	return p, ctx.State().Set(p.GetSku(), []byte(p.GetName()))
}

func TestReadOnlyMethods(t *testing.T) {
	n := newNode(readonly.NewCatalogKind(func(string) readonly.CatalogGrain { return catalog{} }))
	ctx := context.Background()
	client := readonly.NewCatalogClient(n, "shop")
	key := grainKey{readonly.CatalogKind, "shop"}
	if _, err := client.Put(ctx, &readonly.Product{Sku: "s1", Name: "socks"}); err != nil {
		t.Fatal(err)
	}
	if got := n.committed(key); got.commits != 1 {
		t.Fatalf("%d commits after Put, want 1", got.commits)
	}
	for range 3 {
		p, err := client.Get(ctx, &readonly.GetRequest{Sku: "s1"})
		if err != nil || p.GetName() != "socks" {
			t.Fatalf("Get = %v, %v; want socks", p, err)
		}
	}
	if got := n.committed(key); got.flushes != 1 {
		t.Errorf("%d flushes after three Gets, want still 1", got.flushes)
	}
}

// committedMessage decodes the committed typed state of key into a message
// from kind's NewState.
func committedMessage(t *testing.T, n *node, kind *cluster.Kind, key grainKey) proto.Message {
	t.Helper()
	msg := kind.NewState()
	if err := proto.Unmarshal(n.committed(key).message, msg); err != nil {
		t.Fatal(err)
	}
	return msg
}
