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
// are longer) fails the change, with the count of answers and what the
// members said, and leaves a cluster that still gossips: call it again
// with the same key once they are back or gone. It needs a cluster
// started with GossipKeys, and one change at a time.
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
	if resp, err := keys.InstallKey(encoded); err != nil {
		return keyStepError("install the new gossip key", resp, err)
	}
	if resp, err := keys.UseKey(encoded); err != nil {
		return keyStepError("encrypt with the new gossip key", resp, err)
	}
	listed, err := keys.ListKeys()
	if err != nil {
		return keyStepError("list the gossip keys", listed, err)
	}
	for _, old := range slices.Sorted(maps.Keys(listed.Keys)) {
		if old == encoded {
			continue
		}
		if resp, err := keys.RemoveKey(old); err != nil {
			return keyStepError("drop an old gossip key", resp, err)
		}
	}
	return nil
}

// keyStepError says which step of a key change failed and what the
// members said: serf's error counts them only.
func keyStepError(step string, resp *serf.KeyResponse, err error) error {
	var said []string
	if resp != nil {
		for _, name := range slices.Sorted(maps.Keys(resp.Messages)) {
			said = append(said, name+": "+resp.Messages[name])
		}
	}
	if len(said) == 0 {
		return fmt.Errorf("cluster: %s: %w", step, err)
	}
	return fmt.Errorf("cluster: %s: %w (%s)", step, err, strings.Join(said, "; "))
}
