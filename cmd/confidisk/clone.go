package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/confidisk/confidisk/clonetab"
	"github.com/confidisk/confidisk/dm"
	"github.com/confidisk/confidisk/provision"
)

func newCloneCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "clone",
		Short: "Watch and steer the hydration of a dm-clone read-write root",
		Long: `With confidisk.rw=clone, confidisk boot maps the read-write root at
/dev/mapper/` + provision.CloneName + `: a dm-clone whose source is the verity root and whose
destination is the encrypted state volume. The kernel copies (hydrates) the
source into the destination in the background; once every region is
hydrated, the next boot records it and maps the copy alone, without the clone
or the verity source. These commands run on the booted guest.`,
	}
	cmd.AddCommand(newCloneStatusCmd(), newCloneMessageCmd("start", "enable_hydration", "Start (or resume) background hydration"),
		newCloneMessageCmd("stop", "disable_hydration", "Pause background hydration (writes still hydrate their regions)"), newCloneWaitCmd(), newCloneTabCmd())
	return cmd
}

// cloneReport is what `confidisk clone status` says.
type cloneReport struct {
	Device string `json:"device"`
	// State is "hydrating", "paused", "hydrated" (the clone has copied
	// every region: the next boot drops it) or "linear" (the copy alone).
	State     string  `json:"state"`
	Hydrated  uint64  `json:"hydrated_regions,omitempty"`
	Regions   uint64  `json:"regions,omitempty"`
	Percent   float64 `json:"percent"`
	Hydrating uint64  `json:"hydrating_regions,omitempty"`
	// RegionSize is in bytes.
	RegionSize uint64 `json:"region_size,omitempty"`
	Mode       string `json:"metadata_mode,omitempty"`
}

// readClone reports on the device name: a clone's status, or the linear
// mapping of a hydrated copy.
func readClone(c *dm.Client, name string) (cloneReport, error) {
	r := cloneReport{Device: c.DevicePath(name)}
	ts, err := c.Status(name)
	if err != nil {
		return r, err
	}
	if len(ts) == 1 && ts[0].Type == "linear" {
		r.State, r.Percent = "linear", 100
		return r, nil
	}
	st, err := provision.CloneStatusOf(c, name)
	if err != nil {
		return r, err
	}
	r.Hydrated, r.Regions, r.Hydrating, r.RegionSize, r.Mode = st.Hydrated, st.Regions, st.Hydrating, st.RegionSize*512, st.Mode
	if st.Regions > 0 {
		r.Percent = float64(st.Hydrated) * 100 / float64(st.Regions)
	}
	switch {
	case st.Mode == "Fail":
		r.State = "failed"
	case st.Done():
		r.State = "hydrated"
	case st.HydrationEnabled():
		r.State = "hydrating"
	default:
		r.State = "paused"
	}
	return r, nil
}

func (r cloneReport) print(w io.Writer) {
	switch r.State {
	case "linear":
		fmt.Fprintf(w, "%s: hydrated copy mapped alone (no clone, no verity source)\n", r.Device)
	case "failed":
		fmt.Fprintf(w, "%s: dm-clone metadata failed (see the kernel log)\n", r.Device)
	default:
		fmt.Fprintf(w, "%s: %s, %d of %d regions of %d KiB (%.1f%%), %d in flight, metadata %s\n",
			r.Device, r.State, r.Hydrated, r.Regions, r.RegionSize>>10, r.Percent, r.Hydrating, r.Mode)
	}
}

// withDM runs f with a device-mapper client.
func withDM(f func(c *dm.Client) error) error {
	c, err := dm.Open(dm.DefaultControl)
	if err != nil {
		return fmt.Errorf("device-mapper: %w", err)
	}
	defer c.Close()
	return f(c)
}

// emit prints r as JSON or as a line.
func (r cloneReport) emit(w io.Writer, asJSON bool) error {
	if asJSON {
		return writeJSON(w, r)
	}
	r.print(w)
	return nil
}

func newCloneStatusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show how far hydration is",
		Long: `Show the state of /dev/mapper/` + provision.CloneName + `: hydrating, paused, hydrated (every region
copied: the next boot maps the copy alone) or linear (the copy alone), with the
hydrated and total regions. Reading the status commits dm-clone's metadata,
so the progress shown survives a power cut.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withDM(func(c *dm.Client) error {
				r, err := readClone(c, provision.CloneName)
				if err != nil {
					return err
				}
				return r.emit(cmd.OutOrStdout(), asJSON)
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	return cmd
}

func newCloneMessageCmd(use, msg, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Long:  short + ` (the dm-clone message "` + msg + `"). The setting lasts until the next boot, which starts hydration unless confidisk.clone-hydration=0.`,
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withDM(func(c *dm.Client) error {
				if _, err := provision.CloneStatusOf(c, provision.CloneName); err != nil {
					return err
				}
				_, err := c.Message(provision.CloneName, 0, msg)
				return err
			})
		},
	}
}

func newCloneWaitCmd() *cobra.Command {
	var (
		timeout, interval time.Duration
		asJSON            bool
	)
	cmd := &cobra.Command{
		Use:   "wait",
		Short: "Wait until every region is hydrated",
		Long: `Poll the clone until every region is hydrated (or the copy is already mapped
alone), printing progress on standard error. It does not start hydration:
run confidisk clone start first if it is paused. Exits non-zero at --timeout.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			var progress io.Writer = io.Discard
			if term.IsTerminal(int(os.Stderr.Fd())) {
				progress = os.Stderr
			}
			return withDM(func(c *dm.Client) error {
				r, err := waitHydrated(ctx, c, interval, progress)
				if err != nil {
					return err
				}
				return r.emit(cmd.OutOrStdout(), asJSON)
			})
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (0: wait for ever)")
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "how often to read the status (each read commits the clone's metadata)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the final status as JSON")
	return cmd
}

func waitHydrated(ctx context.Context, c *dm.Client, interval time.Duration, progress io.Writer) (cloneReport, error) {
	if interval <= 0 {
		return cloneReport{}, errors.New("--interval must be positive")
	}
	last := -1.0
	for {
		r, err := readClone(c, provision.CloneName)
		if err != nil {
			return r, err
		}
		switch r.State {
		case "hydrated", "linear":
			if last >= 0 {
				fmt.Fprintln(progress)
			}
			return r, nil
		case "failed":
			return r, fmt.Errorf("%s: dm-clone metadata failed", r.Device)
		}
		if r.Percent != last {
			fmt.Fprintf(progress, "\r%s: %s %.1f%%", r.Device, r.State, r.Percent)
			last = r.Percent
		}
		select {
		case <-ctx.Done():
			if last >= 0 {
				fmt.Fprintln(progress)
			}
			return r, fmt.Errorf("hydration not complete (%d of %d regions): %w", r.Hydrated, r.Regions, ctx.Err())
		case <-time.After(interval):
		}
	}
}

func newCloneTabCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "clonetab",
		Short: "Print (or write into a clonetab) the clonetab(5) line of the running clone",
		Long: `Print the /etc/clonetab line (clonetab(5), systemd 262) that describes the
running clone: its name, the verity source, the destination and metadata areas
of the state volume, and its region size, so that a system can hand the clone
over to systemd-clonesetup. With -o FILE the line is written into FILE: an
existing file is read first (a line systemd would not take is refused, naming
it), its ` + provision.CloneName + ` line is replaced or the line appended, every
other line kept as it is, and the file replaced atomically.

The devices are device-mapper names confidisk boot creates after its checks:
systemd-clonesetup can only take over once the boot has mapped them.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withDM(func(c *dm.Client) error {
				e, err := liveCloneEntry(c)
				if err != nil {
					return err
				}
				if out == "" {
					return clonetab.Format(cmd.OutOrStdout(), []clonetab.Entry{e})
				}
				return writeCloneTab(out, e)
			})
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the line into this clonetab file (e.g. "+clonetab.Path+")")
	return cmd
}

// liveCloneEntry is the clonetab entry of the mapped clone.
func liveCloneEntry(c *dm.Client) (clonetab.Entry, error) {
	ts, err := c.Table(provision.CloneName)
	if err != nil {
		return clonetab.Entry{}, err
	}
	if len(ts) != 1 || ts[0].Type != "clone" {
		return clonetab.Entry{}, fmt.Errorf("%s is not a clone (hydration is complete, or it is not mapped): nothing to hand over", c.DevicePath(provision.CloneName))
	}
	f := strings.Fields(ts[0].Params)
	if len(f) < 4 {
		return clonetab.Entry{}, fmt.Errorf("clone table %q", ts[0].Params)
	}
	region, err := strconv.ParseUint(f[3], 10, 64)
	if err != nil {
		return clonetab.Entry{}, fmt.Errorf("clone table %q: region size: %w", ts[0].Params, err)
	}
	return clonetab.Entry{
		Name: provision.CloneName, Source: c.DevicePath(provision.VerityName),
		Destination: c.DevicePath(provision.CloneDestName), Metadata: c.DevicePath(provision.CloneMetaName),
		Options: clonetab.Options{RegionSize: region * 512},
	}, nil
}

// writeCloneTab puts e into the clonetab at path, keeping its other lines.
func writeCloneTab(path string, e clonetab.Entry) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if _, err := clonetab.Parse(bytes.NewReader(old)); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var line strings.Builder
	if err := clonetab.Format(&line, []clonetab.Entry{e}); err != nil {
		return err
	}
	var b bytes.Buffer
	replaced := false
	for _, l := range strings.SplitAfter(string(old), "\n") {
		if l == "" {
			continue
		}
		if x, ignored, _ := clonetab.ParseLine(strings.TrimSuffix(l, "\n")); !ignored && x.Name == e.Name {
			if !replaced {
				b.WriteString(line.String())
			}
			replaced = true
			continue
		}
		b.WriteString(l)
		if !strings.HasSuffix(l, "\n") {
			b.WriteByte('\n')
		}
	}
	if !replaced {
		b.WriteString(line.String())
	}
	tmp := path + ".confidisk-new"
	if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
