//go:build confidisk_insecure && !confidisk_guest

package main

import (
	"github.com/confidisk/confidisk/broker"
	"github.com/confidisk/confidisk/broker/brokertest"
)

// insecureVerifier is the test double that accepts forged evidence, for the
// broker's own process tests (the kill -9 crash test) and load benchmark.
// Only a binary built with -tags confidisk_insecure has it.
func insecureVerifier() (broker.Verifier, bool) { return brokertest.Verifier{}, true }
