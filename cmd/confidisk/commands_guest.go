//go:build confidisk_guest

package main

import "github.com/spf13/cobra"

// operatorCommands are left out of the guest-only build (see
// commands_full.go).
func operatorCommands() []*cobra.Command { return nil }
