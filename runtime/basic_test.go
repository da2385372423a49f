package runtime

import (
	"errors"
	"testing"
)

func TestSendAndRequest(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	got := make(chan any, 10)
	r := spawnFunc(t, s, func(c *Context) {
		switch m := c.Message().(type) {
		case *Started:
			got <- "started"
		case string:
			got <- m
		case int:
			c.Respond(m * 2)
		}
	})
	if v := recv(t, got, "Started"); v != "started" {
		t.Fatalf("first message = %v, want started", v)
	}
	if err := r.Send("hello"); err != nil {
		t.Fatal(err)
	}
	if v := recv(t, got, "hello"); v != "hello" {
		t.Fatalf("got %v", v)
	}
	v, err := r.Request(ctxTimeout(t), 21)
	if err != nil || v != 42 {
		t.Fatalf("Request = %v, %v; want 42, nil", v, err)
	}
	waitClosed(t, r.Stop(), "stop")
	if err := r.Send("late"); !errors.Is(err, ErrStopped) {
		t.Fatalf("Send after stop = %v, want ErrStopped", err)
	}
}
