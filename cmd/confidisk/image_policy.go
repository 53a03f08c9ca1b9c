//go:build !confidisk_guest

package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/confidisk/confidisk/attest"
)

func newImageMergePoliciesCmd() *cobra.Command {
	var out string
	var force bool
	cmd := &cobra.Command{
		Use:   "merge-policies --out FILE POLICY...",
		Short: "Merge the broker policies of the images in service into one (an update adds one, retiring drops one)",
		Long: `Write the policy a broker runs while several images are in service: the
PCR values, root hashes and TEE measurements of every POLICY (files written
by "confidisk image build --policy"), each list sorted and without repeats.

The policies must pin the same PCRs in the same bank and agree on everything
that is not a list of accepted values (volume name, require_root_hash,
require_tee, attestation_keys, which TEEs are pinned): a merge accepts more
images and never drops a check. Retiring an image is merging the others
again. Load the result with "confidisk serve --policy FILE" and reload a
running broker with SIGHUP; a file that does not load leaves the policy in
force (see docs/updates.md).`,
		Example: `  # ship v2: accept v1 and v2
  confidisk image merge-policies --out broker.json v1/policy.json v2/policy.json
  kill -HUP "$(pidof confidisk)"
  # retire v1
  confidisk image merge-policies --force --out broker.json v2/policy.json`,
		Args: rangeArgs(1, 1<<16),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageError{fmt.Errorf("--out is required")}
			}
			ps := make([]*attest.Policy, len(args))
			for i, a := range args {
				p, err := attest.LoadPolicy(a)
				if err != nil {
					return err
				}
				ps[i] = p
			}
			m, err := attest.Merge(ps...)
			if err != nil {
				return err
			}
			b, err := json.MarshalIndent(m, "", "  ")
			if err != nil {
				return err
			}
			b = append(b, '\n')
			if !force {
				return writeNewFile(out, b)
			}
			return writeAtomic(out, 0o644, func(f *os.File) error { _, err := f.Write(b); return err })
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "", "the merged policy's file (required; written atomically)")
	cmd.Flags().BoolVar(&force, "force", false, "replace --out if it exists (a broker's live policy file)")
	return cmd
}
