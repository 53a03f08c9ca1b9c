package provision

import (
	"errors"
	"strings"
	"testing"

	"github.com/confidisk/confidisk/tpm/tpmtest"
)

func TestFixationAgainstSWTPM(t *testing.T) {
	sw := tpmtest.Start(t)
	tp := sw.Open()
	defer tp.Close()
	good := strings.Repeat("ab", 32)
	if err := checkFixation(tp, good); !errors.Is(err, ErrNoFixation) {
		t.Fatalf("before provisioning: %v, want ErrNoFixation", err)
	}
	if stored, err := fixationStored(tp); err != nil || stored {
		t.Fatalf("fixationStored before provisioning = %v, %v", stored, err)
	}
	if err := writeFixation(tp, []byte(strings.Repeat("\xab", 32))); err != nil {
		t.Fatal(err)
	}
	if stored, err := fixationStored(tp); err != nil || !stored {
		t.Fatalf("fixationStored after provisioning = %v, %v", stored, err)
	}
	if err := checkFixation(tp, good); err != nil {
		t.Errorf("matching digest: %v", err)
	}
	if err := checkFixation(tp, strings.Repeat("cd", 32)); !errors.Is(err, ErrFixationMismatch) {
		t.Errorf("other digest: %v, want ErrFixationMismatch", err)
	}
	// Rewriting during a restarted provisioning works; the value persists
	// across a reboot.
	if err := writeFixation(tp, []byte(strings.Repeat("\xcd", 32))); err != nil {
		t.Fatal(err)
	}
	sw.Reboot()
	if err := checkFixation(tp, strings.Repeat("cd", 32)); err != nil {
		t.Errorf("after reboot: %v", err)
	}
	if err := checkFixation(tp, "zz"); err == nil {
		t.Error("malformed fixation value accepted")
	}
}
