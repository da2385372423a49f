package cluster

import (
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
	"google.golang.org/grpc/codes"
)

// ChangeGossipKey makes key the gossip key of every member while the
// cluster runs, without the restarts Config.GossipKeys describes: the
// members install it, then encrypt with it, then drop the others. Each
// step is a query that every member the gossip counts (alive or
// suspected) must answer, and the next step waits for it, so that no
// member drops a key another still encrypts with. A step that a member
// refused or did not answer in time (serf's query timeout: 3.2 s for up to
// nine members in the LAN and local profiles, 6.4 s for up to 99; WAN's
// are longer) fails the change, with the count of answers, what the
// members said and the members that did not hear the step, and leaves a
// cluster that still gossips: call it again with the same key once they
// are back or gone. It needs a cluster started with GossipKeys, and one
// change at a time.
//
// The keys live in the members' memory: restart a member with the new key
// first in Config.GossipKeys, as one with only the old keys no longer
// joins (nor does a member that missed the change while away).
func (n *Node) ChangeGossipKey(key []byte) error {
	if err := memberlist.ValidateKey(key); err != nil {
		return fmt.Errorf("cluster: a gossip key is 16, 24 or 32 bytes (AES-128, -192 or -256), not %d", len(key))
	}
	if len(n.cfg.GossipKeys) == 0 {
		return errors.New("cluster: the gossip is in the clear (no Config.GossipKeys), so it has no key to change: start every member with keys first")
	}
	if n.life.Err() != nil {
		return newError(codes.Unavailable, ErrNodeClosed, "cluster: node %s is closed: change the gossip key on a member", n.name)
	}
	keys := n.serf.KeyManager()
	encoded := base64.StdEncoding.EncodeToString(key)
	if err := n.keyStep("install the new gossip key", func() (*serf.KeyResponse, error) { return keys.InstallKey(encoded) }); err != nil {
		return err
	}
	if err := n.keyStep("encrypt with the new gossip key", func() (*serf.KeyResponse, error) { return keys.UseKey(encoded) }); err != nil {
		return err
	}
	var listed *serf.KeyResponse
	if err := n.keyStep("list the gossip keys", func() (resp *serf.KeyResponse, err error) {
		listed, err = keys.ListKeys()
		return listed, err
	}); err != nil {
		return err
	}
	for _, old := range slices.Sorted(maps.Keys(listed.Keys)) {
		if old == encoded {
			continue
		}
		if err := n.keyStep("drop an old gossip key", func() (*serf.KeyResponse, error) { return keys.RemoveKey(old) }); err != nil {
			return err
		}
	}
	return nil
}

// pingQuery is the name of serf's own query that every member acknowledges
// and nothing else answers.
const pingQuery = serf.InternalQueryPrefix + "ping"

// keyStep runs one step of a key change, a query of serf's key manager, and
// returns keyStepError's error if it failed. Serf's answer names the
// members that refused the step, and only counts those that did not
// answer: a roll call beside it (serf's ping query, asking every member to
// acknowledge it, under the same timeout) names those that did not hear.
func (n *Node) keyStep(step string, run func() (*serf.KeyResponse, error)) error {
	roll, rollErr := n.serf.Query(pingQuery, nil, &serf.QueryParam{RequestAck: true})
	resp, err := run()
	var silent []string
	switch {
	case rollErr != nil:
	case err != nil && resp != nil && resp.NumResp < resp.NumNodes:
		heard := make(map[string]bool)
		for name := range roll.AckCh() { // closed at the roll call's deadline
			heard[name] = true
		}
		silent = unheard(n.serf.Members(), heard)
	default:
		roll.Close() // nobody to name
	}
	if err != nil {
		return keyStepError(step, resp, silent, err)
	}
	return nil
}

// unheard returns the names of the alive members that heard is not true
// for, sorted.
func unheard(members []serf.Member, heard map[string]bool) []string {
	var names []string
	for _, m := range members {
		if m.Status == serf.StatusAlive && !heard[m.Name] {
			names = append(names, m.Name)
		}
	}
	slices.Sort(names)
	return names
}

// keyStepError says which step of a key change failed, what the members
// said, and which members did not hear it (silent): serf's error counts
// them only.
func keyStepError(step string, resp *serf.KeyResponse, silent []string, err error) error {
	var said []string
	if resp != nil {
		for _, name := range slices.Sorted(maps.Keys(resp.Messages)) {
			said = append(said, name+": "+resp.Messages[name])
		}
	}
	if len(silent) > 0 {
		said = append(said, "no word from "+strings.Join(silent, ", "))
	}
	if len(said) == 0 {
		return fmt.Errorf("cluster: %s: %w", step, err)
	}
	return fmt.Errorf("cluster: %s: %w (%s)", step, err, strings.Join(said, "; "))
}
