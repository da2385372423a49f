package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/protograin/protograin/cluster/internal/reminder"
	"github.com/protograin/protograin/cluster/storage"
)

// RegisterReminder registers the durable reminder name of the grain whose
// call (or hook) ctx belongs to, replacing one of the same name: the grain's
// OnReminder runs dueIn from now, then every period (zero: once). The
// reminder is saved in the node's Store at once, not with the grain's next
// flush, and fires from the grain's owner, at least once, across restarts
// and ownership changes (see docs/state.md).
//
// The grain must implement ReminderReceiver. ctx must be the GrainContext
// the cluster passed to the grain. A bad name or a negative duration is
// refused with an error wrapping ErrBadRequest, and nothing is saved.
func RegisterReminder(ctx GrainContext, name string, dueIn, period time.Duration) error {
	n, a, err := grainOf(ctx, "RegisterReminder")
	if err != nil {
		return err
	}
	key := a.key()
	if dueIn < 0 || period < 0 {
		return newError(codes.InvalidArgument, ErrBadRequest, "cluster: reminder %q of grain %s/%s: negative due time %v or period %v",
			name, key.kind, key.identity, dueIn, period)
	}
	if a.hk.stateless() {
		// A stateless worker has no state to keep what a reminder is
		// for, and its host is not the one that fires the reminders of
		// the identity (see Node.owns), which would learn of it only at
		// its next listing.
		return newError(codes.InvalidArgument, ErrBadRequest, "cluster: reminder %q of grain %s/%s: a stateless worker (Kind.StatelessWorkers) takes no reminders",
			name, key.kind, key.identity)
	}
	if _, ok := a.grain.(ReminderReceiver); !ok {
		return newError(codes.InvalidArgument, ErrBadRequest, "cluster: grain kind %q registers reminder %q but does not implement ReminderReceiver",
			key.kind, name)
	}
	r := storage.Reminder{
		Grain:  storage.Key{Kind: key.kind, Identity: key.identity},
		Name:   name,
		Due:    time.Now().Add(dueIn),
		Period: period,
	}
	if err := n.reminders.Register(ctx, r); err != nil {
		return reminderError(err, "cluster: register reminder %q of grain %s/%s: %v", name, key.kind, key.identity, err)
	}
	return nil
}

// UnregisterReminder deletes the reminder name of the grain whose call ctx
// belongs to. Deleting a reminder that does not exist is not an error. A
// firing of the reminder under way on this node that has not reached the
// grain yet (it waits in the mailbox behind this call) does not: OnReminder
// does not run for it after UnregisterReminder returned nil.
func UnregisterReminder(ctx GrainContext, name string) error {
	n, a, err := grainOf(ctx, "UnregisterReminder")
	if err != nil {
		return err
	}
	key := a.key()
	if err := n.reminders.Unregister(ctx, storage.Key{Kind: key.kind, Identity: key.identity}, name); err != nil {
		return reminderError(err, "cluster: unregister reminder %q of grain %s/%s: %v", name, key.kind, key.identity, err)
	}
	return nil
}

// grainOf returns the node and the activation of the grain whose
// GrainContext ctx is.
func grainOf(ctx GrainContext, fn string) (*Node, *activation, error) {
	var n *Node
	var a *activation
	if g, ok := ctx.(grainScope); ok {
		n, a = g.scope()
	}
	if n == nil {
		return nil, nil, newError(codes.InvalidArgument, ErrBadRequest, "cluster: %s needs the GrainContext a cluster node passed to the grain, not a %T", fn, ctx)
	}
	return n, a, nil
}

// reminderError classifies an error of the scheduler: bad arguments are the
// caller's, anything else is the store's.
func reminderError(err error, format string, args ...any) error {
	if errors.Is(err, storage.ErrInvalid) {
		return newError(codes.InvalidArgument, ErrBadRequest, format, args...)
	}
	return newError(codes.Unavailable, ErrStateUnavailable, format, args...)
}

// newReminders makes the node's reminder scheduler. It fires nothing
// until startReminders. Listings that fail are tried again with the call
// retries' backoff (Config.RetryBackoff, RetryBackoffMax), and the
// scheduler lists by itself every reminder.DefaultRelistEvery. A delivery
// that failed for the store waits for it (see reminderStoreFailure).
func (n *Node) newReminders() *reminder.Scheduler {
	kinds := make([]string, 0, len(n.cfg.Kinds))
	for _, k := range n.cfg.Kinds {
		kinds = append(kinds, k.Name)
	}
	return reminder.New(reminder.Config{
		Store:               n.store,
		Kinds:               kinds,
		Owns:                n.owns,
		Fire:                n.fireReminder,
		StoreFailure:        reminderStoreFailure,
		RetryBackoff:        n.cfg.reminderRetryBackoff,
		RetryBackoffMax:     n.cfg.reminderRetryBackoff,
		ListRetryBackoff:    n.cfg.RetryBackoff,
		ListRetryBackoffMax: n.cfg.RetryBackoffMax,
		RelistEvery:         n.cfg.relistEvery,
		Logger:              n.log,
	})
}

// reminderStoreFailure reports whether a delivery of a reminder failed for
// the store: the grain's state could not be loaded, or the commit after
// OnReminder failed, committed or not (ErrStateUnavailable). The scheduler
// tries such a delivery again as soon as it finds the store working after
// an outage, instead of waiting out a backoff that the outage stretched.
// Anything else keeps its backoff, as a working store says nothing about
// it: OnReminder's error or panic, a stored state that does not decode
// (ErrStateUndecodable), a version conflict (ErrStaleActivation), an
// owner that moved or cannot be reached.
func reminderStoreFailure(err error) bool { return errors.Is(err, ErrStateUnavailable) }

// startReminders starts firing the reminders of the grains this node owns.
// Placement must know the members by now. It does not wait for the store:
// the scheduler lists the reminders in the background, and tries again
// with backoff while a listing fails, so a store that is down, slow, or
// holds a record it cannot read does not keep the node from starting (see
// reminder.Scheduler.Relist). It fails only if the scheduler cannot start.
func (n *Node) startReminders() error {
	if err := n.reminders.Start(); err != nil {
		return fmt.Errorf("cluster: start reminders: %w", err)
	}
	return nil
}

// refreshReminders makes the reminder schedule follow a membership change,
// so that this node fires the reminders of the grains it owns now. It
// returns at once: the scheduler lists the store on goroutines of its own,
// each kind within a minute, a change that comes while a kind is listed is
// listed after it, with the view of then, and a listing that fails is
// tried again with backoff until one succeeds. So the view never waits for
// the store (see watchMembership).
func (n *Node) refreshReminders() {
	n.reminders.Relist()
}

// moveRelistMargin is how long after a change that moved grains to this
// node, beyond DeactivateTimeout, the node lists the reminders once more
// (see relistAfterMoves): a leaver starts deactivating its grains once its
// leave has spread (LeavePropagateDelay, 1 s in the LAN and WAN gossip
// profiles) and the calls it serves have ended.
const moveRelistMargin = 3 * time.Second

// relistAfterMoves asks for one more listing of the reminders once the
// members that held the grains that moved to this node between old and p
// are done with them. Their store writes can land after the listing this
// node made for the change, which then missed them (a reminder registered
// there would not fire, one unregistered there would):
//
//   - members that old had alive and p has not (they left or failed):
//     a leaver's OnDeactivate hooks may register and unregister reminders
//     for the grains' next owners;
//   - every member, when p is the first view to have this node alive (it
//     started): the grains it wins were held by others, whose views may
//     not have it yet, and whose calls under way on those grains may
//     register and unregister reminders there after this node listed.
//
// The scheduler keeps one such timer at most. A member that crashed
// writes nothing more, and costs one listing.
func (n *Node) relistAfterMoves(old, p *placement) {
	if st, ok := p.status(n.name); ok && st == StatusAlive {
		if was, ok := old.status(n.name); !ok || was != StatusAlive {
			n.reminders.RelistAfter(n.cfg.DeactivateTimeout + moveRelistMargin)
			return
		}
	}
	for _, was := range old.members {
		if was.Name == n.name || was.Status != StatusAlive {
			continue
		}
		if st, ok := p.status(was.Name); !ok || st != StatusAlive {
			n.reminders.RelistAfter(n.cfg.DeactivateTimeout + moveRelistMargin)
			return
		}
	}
}

// heardFarewell implements requestHandler: a leaving peer said bye, which
// it does once its grains are deactivated, so what their OnDeactivate
// hooks wrote to the reminders is in the store. The listing that follows
// takes it over at once, where the one relistAfterMoves times may come
// after the hooks or, if the leaver's calls took long to drain, before
// them. A peer with no stream to the leaver has only that timer, and the
// scheduler's periodic listing.
func (n *Node) heardFarewell() { n.reminders.Relist() }

// owns reports whether this node owns the grain in its current view, for
// its reminders: for a kind of stateless workers, whether it is the host
// its peers place the grain on, so that one host fires the reminders
// stored for it (which it took before it became one) rather than all.
func (n *Node) owns(kind, identity string) bool {
	m, ok := n.view.Load().sharedOwner(kind, identity)
	return ok && m.Name == n.name
}

// fireReminder delivers a due reminder to its grain, activating it if
// needed, for the scheduler.
func (n *Node) fireReminder(ctx context.Context, r storage.Reminder) error {
	hk := n.kinds[r.Grain.Kind]
	if hk == nil { // the scheduler lists hosted kinds only
		return newError(codes.Unimplemented, ErrUnknownKind, "cluster: node %s does not host grain kind %q", n.name, r.Grain.Kind)
	}
	if err := n.checkOwner(r.Grain.Kind, r.Grain.Identity); err != nil {
		return err
	}
	ticket, ok := n.calls.enter()
	if !ok {
		return newError(codes.Unavailable, ErrNodeClosed, "cluster: node %s is shutting down", n.name)
	}
	defer n.calls.leave(ticket)
	_, err := n.deliver(ctx, hk, r.Grain.Identity, "reminder "+r.Name, &reminderCall{ctx: ctx, name: r.Name}, false)
	return err
}
