// Command confidisk is the one binary of the confidisk project: the image
// builder, the guest's initrd helper and the verifier service. Each
// subcommand is a thin layer over a package of this module.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	root := newRootCmd()
	if err := root.Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "confidisk: %v\n", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError marks an error in the command line itself (exit status 2).
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "confidisk",
		Short: "Trustworthy storage for confidential VM guests",
		Long: `confidisk gives confidential VM guests (SEV-SNP, TDX, with a vTPM) storage
they can trust: dm-verity for the read-only OS, LUKS2 with integrity for
read-write data, keys sealed to the vTPM, attestation and roll-back protection.

Its on-disk formats are byte-compatible with veritysetup, cryptsetup and systemd.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newVerityCmd(), newLUKSCmd(), newBootCmd(), newEpochCmd(), newTPMCmd(), newStateCmd(), newCloneCmd())
	root.AddCommand(operatorCommands()...)
	return root
}
