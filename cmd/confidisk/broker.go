//go:build !confidisk_guest

package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/confidisk/confidisk/broker"
	"github.com/confidisk/confidisk/broker/api"
	"github.com/confidisk/confidisk/broker/client"
)

// brokerFlags say how to reach a broker.
type brokerFlags struct {
	url, data, ca, cert, key string
	asJSON                   bool
}

// client connects to the broker: the server certificate from --ca (default
// DATA/tls/server.crt) and, when one is there, the operator certificate
// from --cert/--key (default DATA/tls/operator.{crt,key}).
func (f *brokerFlags) client() (*client.Client, error) {
	data := f.data
	if data == "" {
		var err error
		if data, err = defaultDataDir(); err != nil {
			return nil, err
		}
	}
	files := broker.TLSPaths(filepath.Join(data, "tls"))
	ca := f.ca
	if ca == "" {
		ca = files.ServerCert
	}
	cert, key := f.cert, f.key
	if cert == "" {
		if _, err := os.Stat(files.OperatorCert); err == nil {
			cert, key = files.OperatorCert, files.OperatorKey
		}
	}
	if (cert == "") != (key == "") {
		return nil, usageError{errors.New("--cert and --key go together")}
	}
	c, err := client.Dial(f.url, ca, cert, key)
	if err != nil {
		return nil, fmt.Errorf("%w (give the broker's certificate with --ca, or its data directory with --data)", err)
	}
	return c, nil
}

func newBrokerCmd() *cobra.Command {
	f := &brokerFlags{}
	cmd := &cobra.Command{
		Use:   "broker",
		Short: "Talk to a confidisk broker: volumes, epochs, keys (operators and tools)",
		Long: `Calls a broker started with "confidisk serve" over HTTPS.

The broker's certificate is pinned (--ca, default DATA/tls/server.crt) and the
operator client certificate (--cert/--key, default DATA/tls/operator.crt and
.key when present) is presented; DATA is --data, by default the directory
"confidisk serve" uses. So on the broker's own machine

  confidisk broker volumes

works as it is. Endpoints marked "operator" need the operator certificate.`,
	}
	p := cmd.PersistentFlags()
	p.StringVar(&f.url, "url", "https://127.0.0.1:8443", "the broker's address")
	p.StringVar(&f.data, "data", "", "the broker's data directory, for its certificates (default: that of confidisk serve)")
	p.StringVar(&f.ca, "ca", "", "PEM certificate(s) the broker's certificate must chain to (default DATA/tls/server.crt)")
	p.StringVar(&f.cert, "cert", "", "operator client certificate (default DATA/tls/operator.crt if it exists)")
	p.StringVar(&f.key, "key", "", "operator client key (default DATA/tls/operator.key)")
	cmd.AddCommand(brokerHealthCmd(f), brokerVolumeCmd(f), brokerVolumesCmd(f), brokerEpochCmd(f),
		brokerRegisterCreationCmd(f), brokerRegisterCmd(f), brokerPutKeyCmd(f), brokerRecoverCmd(f))
	return cmd
}

// run wraps a call with the client.
func (f *brokerFlags) run(fn func(cmd *cobra.Command, c *client.Client, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := f.client()
		if err != nil {
			return err
		}
		defer c.Close()
		return fn(cmd, c, args)
	}
}

// jsonFlag adds --json to an inspection command.
func (f *brokerFlags) jsonFlag(c *cobra.Command) *cobra.Command {
	c.Flags().BoolVar(&f.asJSON, "json", false, "print JSON")
	return c
}

func printVolume(w io.Writer, v *api.Volume) {
	fmt.Fprintf(w, "volume %s\n  key id       %s\n  created      %s\n", v.UUID, v.KeyID, v.CreatedAt.Format("2006-01-02 15:04:05 MST"))
	if len(v.Measurements) > 0 {
		fmt.Fprintf(w, "  measurements %s\n", v.Measurements)
	}
	if len(v.Recovery) > 0 {
		fmt.Fprintf(w, "  recovery     escrowed (confidisk broker recover %s --operator-key KEY)\n", v.UUID)
	}
}

// show prints a volume as text, or as JSON with --json.
func (f *brokerFlags) show(cmd *cobra.Command, v *api.Volume) error {
	if f.asJSON {
		return writeJSON(cmd.OutOrStdout(), v)
	}
	printVolume(cmd.OutOrStdout(), v)
	return nil
}
