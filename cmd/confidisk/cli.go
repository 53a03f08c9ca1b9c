package main

import (
	"fmt"
	"os"
	"sync"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// exactArgs is cobra.ExactArgs with a message that shows the usage line.
func exactArgs(n int) cobra.PositionalArgs { return rangeArgs(n, n) }

// rangeArgs accepts between min and max positional arguments.
func rangeArgs(min, max int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < min || len(args) > max {
			return usageError{fmt.Errorf("%s: got %d arguments; usage: %s (see --help)", cmd.CommandPath(), len(args), cmd.UseLine())}
		}
		return nil
	}
}

// progressMinBytes is the size below which no progress bar is shown.
const progressMinBytes = 64 << 20

// progress is a byte progress bar on standard error, shown only on a
// terminal and only for large inputs; otherwise its methods do nothing.
type progress struct {
	mu  sync.Mutex
	bar *progressbar.ProgressBar
}

func newProgress(what string, total int64) *progress {
	if total < progressMinBytes || !term.IsTerminal(int(os.Stderr.Fd())) {
		return &progress{}
	}
	return &progress{bar: progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100_000_000),
		progressbar.OptionClearOnFinish(),
	)}
}

// update is a verity.Options.Progress callback.
func (p *progress) update(done, _ uint64) {
	if p.bar == nil {
		return
	}
	p.mu.Lock()
	p.bar.Set64(int64(done))
	p.mu.Unlock()
}

func (p *progress) finish() {
	if p.bar != nil {
		p.bar.Finish()
	}
}
