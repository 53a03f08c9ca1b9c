//go:build !confidisk_insecure && !confidisk_guest

package main

import "github.com/confidisk/confidisk/broker"

// insecureVerifier: the production binary has no verifier that accepts
// forged evidence (see serve_insecure.go).
func insecureVerifier() (broker.Verifier, bool) { return nil, false }
