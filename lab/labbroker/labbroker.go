// Package labbroker runs a confidisk broker on the host's loopback for lab
// guests, which reach it at lab.HostIP through QEMU's user network. It
// verifies evidence with the real attest.Validator under a policy that can be
// set after the broker started (what an operator's policy reload does): a
// guest image names the broker's address and carries its certificate, so
// the image, and with it the policy of its reference values, is built after
// the broker listens.
package labbroker

import (
	"strings"

	"github.com/confidisk/confidisk/attest"
	"github.com/confidisk/confidisk/broker"
	"github.com/confidisk/confidisk/broker/brokertest"
	"github.com/confidisk/confidisk/lab"
)

// Broker is a running lab broker.
type Broker struct {
	*brokertest.Local
	// URL is what confidisk.broker= takes: https://10.0.2.2:PORT.
	URL string
	// CACert is the broker's certificate (PEM file), for
	// /etc/confidisk/broker.pem in the guest's initrd.
	CACert string
	v      *attest.Switch
}

// Start starts a broker with its data in dir. It refuses every guest until
// [Broker.SetPolicy].
func Start(dir string) (*Broker, error) {
	v := &attest.Switch{}
	l, err := brokertest.StartLocal(dir, []string{lab.HostIP}, func(c *broker.Config) { c.Verifier = v })
	if err != nil {
		return nil, err
	}
	port := l.Addr.String()[strings.LastIndex(l.Addr.String(), ":")+1:]
	return &Broker{Local: l, URL: "https://" + lab.HostIP + ":" + port, CACert: l.TLS.ServerCert, v: v}, nil
}

// SetPolicy makes the broker verify evidence against p from now on.
func (b *Broker) SetPolicy(p *attest.Policy) error {
	val, err := attest.NewValidator(p, attest.ValidatorOptions{})
	if err != nil {
		return err
	}
	b.v.Set(val)
	return nil
}
