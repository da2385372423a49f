package reminder_test

import (
	"context"
	"fmt"
	"time"

	"github.com/protograin/protograin/cluster/internal/reminder"
	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/memstore"
)

// A node creates one Scheduler over its store, starts it once placement
// knows the members, calls Relist on every membership change, and closes it
// on shutdown before closing the store.
func Example() {
	store := memstore.New()
	defer store.Close()

	fired := make(chan storage.Reminder, 1)
	s := reminder.New(reminder.Config{
		Store: store,
		Kinds: []string{"bank.v1.Account"},
		// A real node asks its placement; this one owns every grain.
		Owns: func(kind, identity string) bool { return true },
		// A real node activates the grain and delivers the reminder.
		Fire: func(ctx context.Context, r storage.Reminder) error {
			fired <- r
			return nil
		},
	})
	defer s.Close()
	if err := s.Start(); err != nil {
		fmt.Println(err)
		return
	}

	err := s.Register(context.Background(), storage.Reminder{
		Grain: storage.Key{Kind: "bank.v1.Account", Identity: "alice"},
		Name:  "interest",
		Due:   time.Now(),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	r := <-fired
	fmt.Printf("%s fired for %s\n", r.Name, r.Grain)
	// Output: interest fired for "bank.v1.Account"/"alice"
}
