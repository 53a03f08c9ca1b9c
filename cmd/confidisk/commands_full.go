//go:build !confidisk_guest

package main

import "github.com/spf13/cobra"

// operatorCommands are the verifier's, the operator's and the image
// builder's commands: the broker server and its client, initrd and image. The guest-only build (-tags
// confidisk_guest, what an initrd carries) leaves them out, and with them
// the broker's server, its stores (bbolt, PostgreSQL) and the vendors'
// verification code.
func operatorCommands() []*cobra.Command {
	return []*cobra.Command{newServeCmd(), newBrokerCmd(), newInitrdCmd(), newImageCmd()}
}
