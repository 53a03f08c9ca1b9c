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
	if err := CheckFixation(tp, good); !errors.Is(err, ErrNoFixation) {
		t.Fatalf("before provisioning: %v, want ErrNoFixation", err)
	}
	if stored, err := FixationStored(tp); err != nil || stored {
		t.Fatalf("FixationStored before provisioning = %v, %v", stored, err)
	}
	if err := WriteFixation(tp, []byte(strings.Repeat("\xab", 32))); err != nil {
		t.Fatal(err)
	}
	if stored, err := FixationStored(tp); err != nil || !stored {
		t.Fatalf("FixationStored after provisioning = %v, %v", stored, err)
	}
	if err := CheckFixation(tp, good); err != nil {
		t.Errorf("matching digest: %v", err)
	}
	if err := CheckFixation(tp, strings.Repeat("cd", 32)); !errors.Is(err, ErrFixationMismatch) {
		t.Errorf("other digest: %v, want ErrFixationMismatch", err)
	}
	// Rewriting during a restarted provisioning works; the value persists
	// across a reboot.
	if err := WriteFixation(tp, []byte(strings.Repeat("\xcd", 32))); err != nil {
		t.Fatal(err)
	}
	sw.Reboot()
	if err := CheckFixation(tp, strings.Repeat("cd", 32)); err != nil {
		t.Errorf("after reboot: %v", err)
	}
	if err := CheckFixation(tp, "zz"); err == nil {
		t.Error("malformed fixation value accepted")
	}
}
