package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/protograin/protograin/runtime"
)

// greeter answers a name with a greeting.
type greeter struct{ greeted int }

func (g *greeter) Receive(c *runtime.Context) {
	switch m := c.Message().(type) {
	case *runtime.Started:
		fmt.Println("started")
	case string:
		g.greeted++
		c.Respond(fmt.Sprintf("hello %s (#%d)", m, g.greeted))
	case *runtime.Stopped:
		fmt.Println("stopped")
	}
}

func ExampleSystem_Spawn() {
	sys := runtime.NewSystem(runtime.Config{})
	defer sys.Close()

	ref, err := sys.Spawn(runtime.Props{New: func() runtime.Actor { return &greeter{} }})
	if err != nil {
		fmt.Println(err)
		return
	}
	reply, err := ref.Request(context.Background(), "ada")
	fmt.Println(reply, err)
	<-ref.GracefulStop()
	// Output:
	// started
	// hello ada (#1) <nil>
	// stopped
}

func ExampleRef_Request() {
	sys := runtime.NewSystem(runtime.Config{})
	defer sys.Close()

	ref, _ := sys.Spawn(runtime.Props{New: func() runtime.Actor {
		return runtime.ActorFunc(func(c *runtime.Context) {
			switch m := c.Message().(type) {
			case int:
				if m < 0 {
					c.RespondError(fmt.Errorf("square root of %d", m))
					return
				}
				c.Respond(m * m)
			case string:
				panic("strings are not numbers")
			}
		})
	}})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := ref.Request(ctx, 7)
	fmt.Println(v, err)
	_, err = ref.Request(ctx, -1)
	fmt.Println(err)
	_, err = ref.Request(ctx, "seven") // the actor panics, is restarted, and keeps serving
	fmt.Println(errors.Is(err, runtime.ErrPanic))
	v, err = ref.Request(ctx, 8)
	fmt.Println(v, err)
	<-ref.Stop()
	_, err = ref.Request(context.Background(), 9) // fails at once: no deadline needed
	fmt.Println(err)
	// Output:
	// 49 <nil>
	// square root of -1
	// true
	// 64 <nil>
	// runtime: actor stopped
}

func ExampleContext_Watch() {
	sys := runtime.NewSystem(runtime.Config{})
	defer sys.Close()

	worker, _ := sys.Spawn(runtime.Props{New: func() runtime.Actor {
		return runtime.ActorFunc(func(*runtime.Context) {})
	}})
	done := make(chan struct{})
	watcher, _ := sys.Spawn(runtime.Props{New: func() runtime.Actor {
		return runtime.ActorFunc(func(c *runtime.Context) {
			switch m := c.Message().(type) {
			case *runtime.Ref:
				c.Watch(m)
				c.Respond(nil)
			case *runtime.Terminated:
				fmt.Println("worker terminated:", m.Who == worker)
				close(done)
			}
		})
	}})
	if _, err := watcher.Request(context.Background(), worker); err != nil {
		fmt.Println(err)
		return
	}
	worker.Stop()
	<-done
	// Output:
	// worker terminated: true
}

func ExampleNewAllForOne() {
	sys := runtime.NewSystem(runtime.Config{})
	defer sys.Close()

	restarts := make(chan string, 2)
	child := func(name string) runtime.Props {
		return runtime.Props{New: func() runtime.Actor {
			return runtime.ActorFunc(func(c *runtime.Context) {
				switch c.Message().(type) {
				case *runtime.Restarting:
					restarts <- name
				case string:
					panic("boom")
				}
			})
		}}
	}
	kids := make(chan *runtime.Ref, 2)
	_, _ = sys.Spawn(runtime.Props{
		// When one child fails, restart both.
		Supervisor: runtime.NewAllForOne(runtime.StrategyConfig{MaxRestarts: 3}),
		New: func() runtime.Actor {
			return runtime.ActorFunc(func(c *runtime.Context) {
				if _, ok := c.Message().(*runtime.Started); ok {
					a, _ := c.Spawn(child("a"))
					b, _ := c.Spawn(child("b"))
					kids <- a
					kids <- b
				}
			})
		},
	})
	a := <-kids
	<-kids
	_ = a.Send("fail")
	got := map[string]bool{<-restarts: true, <-restarts: true}
	fmt.Println(got["a"], got["b"])
	// Output:
	// true true
}

func ExampleSystem_SubscribeDeadLetters() {
	sys := runtime.NewSystem(runtime.Config{})
	defer sys.Close()

	letters := make(chan runtime.DeadLetter, 16) // buffered: publishing never blocks
	defer sys.SubscribeDeadLetters(letters)()

	ref, _ := sys.Spawn(runtime.Props{New: func() runtime.Actor {
		return runtime.ActorFunc(func(*runtime.Context) {})
	}})
	<-ref.Stop()
	err := ref.Send("anyone there?")
	dl := <-letters
	fmt.Println(err)
	fmt.Println(dl.Message, dl.To == ref, dl.Reason)
	// Output:
	// runtime: actor stopped
	// anyone there? true runtime: actor stopped
}

func ExampleContext_SendEvery() {
	sys := runtime.NewSystem(runtime.Config{})
	defer sys.Close()

	done := make(chan struct{})
	_, _ = sys.Spawn(runtime.Props{New: func() runtime.Actor {
		ticks := 0
		return runtime.ActorFunc(func(c *runtime.Context) {
			switch c.Message() {
			case "tick":
				ticks++
				fmt.Println("tick", ticks)
				if ticks == 3 {
					close(done)
					c.Self().Stop() // cancels the timer
				}
			}
			if _, ok := c.Message().(*runtime.Started); ok {
				c.SendEvery(time.Millisecond, "tick")
			}
		})
	}})
	<-done
	// Output:
	// tick 1
	// tick 2
	// tick 3
}

func ExampleSystem_Shutdown() {
	sys := runtime.NewSystem(runtime.Config{})
	ref, _ := sys.Spawn(runtime.Props{New: func() runtime.Actor {
		return runtime.ActorFunc(func(c *runtime.Context) {
			if m, ok := c.Message().(string); ok {
				fmt.Println("handled", m)
			}
		})
	}})
	for _, m := range []string{"a", "b", "c"} {
		_ = ref.Send(m)
	}
	// Shutdown lets the queued messages through, then stops every actor.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fmt.Println(sys.Shutdown(ctx))
	_, err := sys.Spawn(runtime.Props{New: func() runtime.Actor { return runtime.ActorFunc(func(*runtime.Context) {}) }})
	fmt.Println(err)
	// Output:
	// handled a
	// handled b
	// handled c
	// <nil>
	// runtime: actor system stopped
}

func ExampleMiddleware() {
	sys := runtime.NewSystem(runtime.Config{})
	defer sys.Close()

	// trace prints the type of every user message around its handling.
	trace := func(next runtime.ReceiveFunc) runtime.ReceiveFunc {
		return func(c *runtime.Context) {
			if _, ok := c.Message().(string); !ok {
				next(c) // lifecycle messages pass through untraced
				return
			}
			fmt.Printf("-> %T\n", c.Message())
			next(c)
			fmt.Printf("<- %T\n", c.Message())
		}
	}
	ref, _ := sys.Spawn(runtime.Props{
		Middleware: []runtime.Middleware{trace},
		New: func() runtime.Actor {
			return runtime.ActorFunc(func(c *runtime.Context) {
				if m, ok := c.Message().(string); ok {
					fmt.Println("handling", m)
					c.Respond(nil)
				}
			})
		},
	})
	_, _ = ref.Request(context.Background(), "hi")
	// Output:
	// -> string
	// handling hi
	// <- string
}

func ExampleContext_DetachReply() {
	sys := runtime.NewSystem(runtime.Config{})
	defer sys.Close()

	ref, _ := sys.Spawn(runtime.Props{New: func() runtime.Actor {
		return runtime.ActorFunc(func(c *runtime.Context) {
			if q, ok := c.Message().(string); ok {
				// Answer from another goroutine, leaving the actor free for
				// its next message meanwhile.
				resp := c.DetachReply()
				go resp.Respond("slow answer to " + q)
			}
		})
	}})
	v, err := ref.Request(context.Background(), "question")
	fmt.Println(v, err)
	// Output:
	// slow answer to question <nil>
}

func ExampleMailboxConfig() {
	sys := runtime.NewSystem(runtime.Config{})
	defer sys.Close()

	busy, release := make(chan struct{}), make(chan struct{})
	ref, _ := sys.Spawn(runtime.Props{
		Mailbox: runtime.MailboxConfig{Capacity: 1, Overflow: runtime.MailboxFail},
		New: func() runtime.Actor {
			return runtime.ActorFunc(func(c *runtime.Context) {
				if c.Message() == "wait" {
					close(busy)
					<-release
				}
			})
		},
	})
	_ = ref.Send("wait")
	<-busy
	// The actor is busy: the first message takes the one slot, the second
	// overflows it.
	fmt.Println(ref.Send("first"))
	fmt.Println(ref.Send("second"))
	close(release)
	// Output:
	// <nil>
	// runtime: mailbox full
}

// ExampleBatch delivers the messages of a received packet, as a network
// reader would: the messages for each actor reach its mailbox in one push,
// in the order they were added.
func ExampleBatch() {
	sys := runtime.NewSystem(runtime.Config{})
	defer sys.Close()

	done := make(chan struct{})
	counter, _ := sys.Spawn(runtime.Props{New: func() runtime.Actor {
		sum := 0
		return runtime.ActorFunc(func(c *runtime.Context) {
			if n, ok := c.Message().(int); ok {
				sum += n
				if n == 4 {
					fmt.Println("sum", sum)
					close(done)
				}
			}
		})
	}})

	var batch runtime.Batch // one per reader goroutine, kept for its life
	for _, n := range []int{1, 2, 3, 4} {
		if err := batch.Add(counter, n); err != nil {
			fmt.Println(err)
		}
	}
	batch.Flush() // the end of the packet: the actor sees all four
	<-done
	// Output:
	// sum 10
}
