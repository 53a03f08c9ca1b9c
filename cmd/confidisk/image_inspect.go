//go:build !confidisk_guest

package main

import (
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/confidisk/confidisk/secureboot"
	"github.com/confidisk/confidisk/uki"
)

func newImageInspectCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect [--json] FILE...",
		Short: "Show a UKI's or addon's stub, sections and what it measures (PCR 4, 11, 12)",
		Long: `Read UKIs and addons built on systemd-stub (by confidisk image build, ukify or a
distribution) and print, for each: the stub and its release, the PE sections
(name, RVA, sizes), the Authenticode SHA-256 (what firmware extends into PCR 4
when it loads the file), and

  a UKI:   the PCR 11 value systemd-stub produces (each measured section, in
           the release's order; releases 252, 254 and 257 are known)
  an addon: its .cmdline and the PCR 12 value of a boot with it as the only
           addon of its directory.

Nothing is booted: the values are computed from the files.`,
		Example: `  confidisk image inspect --json /boot/efi/EFI/Linux/*.efi`,
		Args:    rangeArgs(1, 1<<16),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out []peReport
			for _, p := range args {
				r, err := inspectPE(p)
				if err != nil {
					return fmt.Errorf("%s: %w", p, err)
				}
				out = append(out, *r)
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), out)
			}
			for _, r := range out {
				r.print(cmd.OutOrStdout())
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// peReport is `image inspect` of one file.
type peReport struct {
	File         string         `json:"file"`
	Info         *uki.Info      `json:"info"`
	Authenticode string         `json:"authenticode_sha256"`
	Cmdline      string         `json:"cmdline,omitempty"`
	PCRs         map[int]string `json:"pcrs"`
	Measurements []eventJSON    `json:"measurements"`
}

type eventJSON struct {
	PCR         int    `json:"pcr"`
	Description string `json:"description"`
	Digest      string `json:"digest"`
}

func inspectPE(path string) (*peReport, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	info, err := uki.Inspect(b)
	if err != nil {
		return nil, err
	}
	d, err := secureboot.AuthenticodeDigest(b)
	if err != nil {
		return nil, err
	}
	r := &peReport{File: path, Info: info, Authenticode: hex.EncodeToString(d), PCRs: map[int]string{}}
	cl, _ := uki.SectionData(b, ".cmdline")
	r.Cmdline = string(cl)
	var ev []uki.Event
	pcr := uki.PCRKernelConfig
	if info.Stub.Kind == uki.KindStub {
		pcr = uki.PCRKernelBoot
		if ev, err = uki.KernelBootEvents(b); err != nil {
			return nil, err
		}
	} else if r.Cmdline != "" {
		ev = uki.AddonEvents([]string{r.Cmdline})
	}
	for _, e := range ev {
		r.Measurements = append(r.Measurements, eventJSON{e.PCR, e.Description, hex.EncodeToString(e.Digest[:])})
	}
	v := uki.Extend(ev)
	r.PCRs[pcr] = hex.EncodeToString(v[:])
	return r, nil
}

func (r *peReport) print(w io.Writer) {
	fmt.Fprintf(w, "%s: %s (%s)\n", r.File, r.Info.Stub, r.Info.Stub.Kind)
	fmt.Fprintf(w, "  image base %#x, section alignment %#x, file alignment %#x\n", r.Info.ImageBase, r.Info.SectionAlignment, r.Info.FileAlignment)
	for _, s := range r.Info.Sections {
		fmt.Fprintf(w, "  %-9s rva %#08x  size %10d  file %#08x\n", s.Name, s.VirtualAddress, s.VirtualSize, s.Offset)
	}
	fmt.Fprintf(w, "  authenticode sha256 %s\n", r.Authenticode)
	if r.Cmdline != "" {
		fmt.Fprintf(w, "  .cmdline %q\n", r.Cmdline)
	}
	for pcr, v := range r.PCRs {
		fmt.Fprintf(w, "  pcr %d %s\n", pcr, v)
	}
}
