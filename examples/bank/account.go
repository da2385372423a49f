package main

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/protograin/protograin/cluster"
	"github.com/protograin/protograin/examples/bankpb"
)

// account is one activation of the Account grain. Its durable state is the
// AccountState message the cluster loads on activation; the methods change it
// in place, and the cluster commits it after each call that changed it,
// before the reply is sent.
type account struct {
	bankpb.UnimplementedAccountGrain

	node string
}

// newAccountKind returns the Account kind for the node named node.
func newAccountKind(node string) *cluster.Kind {
	return bankpb.NewAccountKind(func(string) bankpb.AccountGrain {
		return &account{node: node}
	})
}

// Deposit adds the amount to the balance.
func (a *account) Deposit(ctx cluster.GrainContext, req *bankpb.DepositRequest) (*bankpb.BalanceResponse, error) {
	if err := checkAmount(req.GetAmount()); err != nil {
		return nil, err
	}
	st := bankpb.AccountStateOf(ctx)
	st.Balance += req.GetAmount()
	st.Operations++
	return a.reply(st), nil
}

// Withdraw takes the amount from the balance if it is there.
func (a *account) Withdraw(ctx cluster.GrainContext, req *bankpb.WithdrawRequest) (*bankpb.BalanceResponse, error) {
	if err := checkAmount(req.GetAmount()); err != nil {
		return nil, err
	}
	st := bankpb.AccountStateOf(ctx)
	if st.GetBalance() < req.GetAmount() {
		return nil, status.Errorf(codes.FailedPrecondition, "bank: balance %d is below %d", st.GetBalance(), req.GetAmount())
	}
	st.Balance -= req.GetAmount()
	st.Operations++
	return a.reply(st), nil
}

// Transfer takes the amount from this account and deposits it into the
// other one. The deposit is a grain-to-grain call: its exactly-once stamp is
// derived from this call's, so if this call runs again (say its node failed
// before the commit and the client retried) the deposit is answered from the
// other account's record instead of being applied twice. The withdrawal here
// is committed after the call, so it too happens once.
func (a *account) Transfer(ctx cluster.GrainContext, req *bankpb.TransferRequest) (*bankpb.BalanceResponse, error) {
	if err := checkAmount(req.GetAmount()); err != nil {
		return nil, err
	}
	if req.GetTo() == ctx.Identity() {
		return nil, status.Error(codes.InvalidArgument, "bank: cannot transfer to the same account")
	}
	st := bankpb.AccountStateOf(ctx)
	if st.GetBalance() < req.GetAmount() {
		return nil, status.Errorf(codes.FailedPrecondition, "bank: balance %d is below %d", st.GetBalance(), req.GetAmount())
	}
	if _, err := bankpb.NewAccountClient(ctx, req.GetTo()).Deposit(ctx, &bankpb.DepositRequest{Amount: req.GetAmount()}); err != nil {
		return nil, err
	}
	st.Balance -= req.GetAmount()
	st.Operations++
	return a.reply(st), nil
}

// Balance reports the state without changing it.
func (a *account) Balance(ctx cluster.GrainContext, _ *bankpb.BalanceRequest) (*bankpb.BalanceResponse, error) {
	return a.reply(bankpb.AccountStateOf(ctx)), nil
}

func (a *account) reply(st *bankpb.AccountState) *bankpb.BalanceResponse {
	return &bankpb.BalanceResponse{Balance: st.GetBalance(), Operations: st.GetOperations(), Node: a.node}
}

func checkAmount(amount int64) error {
	if amount <= 0 {
		return status.Errorf(codes.InvalidArgument, "bank: amount %d is not positive", amount)
	}
	return nil
}
