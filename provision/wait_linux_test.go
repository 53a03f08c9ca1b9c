package provision

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestWaitFor(t *testing.T) {
	var log strings.Builder
	b := &booter{cfg: Config{DeviceTimeout: 5 * time.Second}, o: Options{Log: &log}}
	calls := 0
	err := b.waitFor(context.Background(), "the late device", func() error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("waitFor = %v after %d tries, want success on the third", err, calls)
	}
	if !strings.Contains(log.String(), "waiting up to 5s for the late device (not yet)") || !strings.Contains(log.String(), "the late device appeared") {
		t.Errorf("log: %q", log.String())
	}

	b.cfg.DeviceTimeout = 300 * time.Millisecond
	start := time.Now()
	err = b.waitFor(context.Background(), "a missing device", func() error { return errors.New("no such device") })
	if err == nil || !strings.Contains(err.Error(), "no such device") || !strings.Contains(err.Error(), "waited 300ms for a missing device") {
		t.Errorf("waitFor of a missing device = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("waitFor took %s with a 300ms bound", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b.cfg.DeviceTimeout = time.Hour
	if err := b.waitFor(ctx, "x", func() error { return errors.New("no") }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled wait: %v", err)
	}
}

func TestCleanup(t *testing.T) {
	var order []string
	var c cleanup
	c.add(func() error { order = append(order, "verity"); return nil })
	c.add(func() error { order = append(order, "mount"); return errors.New("busy") })
	c.add(func() error { order = append(order, "state"); return nil })
	var logged []string
	c.run(func(f string, a ...any) { logged = append(logged, f) })
	if diff := cmp.Diff([]string{"state", "mount", "verity"}, order); diff != "" {
		t.Errorf("undo order (-want +got):\n%s", diff)
	}
	if len(logged) != 1 {
		t.Errorf("logged %v, want the one failure", logged)
	}
	c.run(func(string, ...any) { t.Error("run twice undid again") })
}
