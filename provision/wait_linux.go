package provision

import (
	"context"
	"fmt"
	"os"
	"time"
)

// pollInterval is how often the boot looks again for a device that is not
// there yet.
const pollInterval = 100 * time.Millisecond

// waitFor calls try until it succeeds or the configured device timeout has
// passed, saying once what it waits for. It returns try's last error. In a
// real initrd (no udev here) disks, partitions and the TPM appear as their
// drivers probe, which under load takes seconds.
func (b *booter) waitFor(ctx context.Context, what string, try func() error) error {
	deadline := time.Now().Add(b.cfg.DeviceTimeout)
	err := try()
	if err == nil {
		return nil
	}
	b.logf("waiting up to %s for %s (%v)", b.cfg.DeviceTimeout, what, err)
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if err = try(); err == nil {
			b.logf("%s appeared", what)
			return nil
		}
	}
	return fmt.Errorf("%w (waited %s for %s: confidisk.device-timeout=)", err, b.cfg.DeviceTimeout, what)
}

// deviceExists is a try for waitFor: path exists.
func deviceExists(path string) func() error {
	return func() error {
		_, err := os.Stat(path)
		return err
	}
}

// cleanup is what a failed boot undoes, last first: the mappings it made
// and the mounts, so that nothing of a refused boot stays usable and a
// retry starts clean.
type cleanup []func() error

func (c *cleanup) add(f func() error) { *c = append(*c, f) }

// run undoes everything, reporting what could not be undone.
func (c *cleanup) run(logf func(string, ...any)) {
	for i := len(*c) - 1; i >= 0; i-- {
		if err := (*c)[i](); err != nil {
			logf("clean up after the failure: %v", err)
		}
	}
	*c = nil
}
