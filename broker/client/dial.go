package client

import "fmt"

// Dial returns a client of the broker at baseURL that trusts the
// certificates in serverCAFile and, when certFile is set, presents that
// client certificate (an operator): [New] with [TLSConfig]. The guest's
// boot, `confidisk epoch` and `confidisk broker` all connect through it.
func Dial(baseURL, serverCAFile, certFile, keyFile string) (*Client, error) {
	tc, err := TLSConfig(serverCAFile, certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("broker %s: %w", baseURL, err)
	}
	return New(baseURL, Options{TLS: tc})
}
