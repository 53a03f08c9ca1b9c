package testutil

import "testing"

func TestLookPathFindsSh(t *testing.T) {
	if p := LookPath(t, "sh", "dash"); p == "" {
		t.Fatal("LookPath returned an empty path for sh")
	}
}
