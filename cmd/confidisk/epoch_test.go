package main

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/confidisk/confidisk/provision"
	"github.com/confidisk/confidisk/tpm/tpmtest"
)

func TestEpochCLI(t *testing.T) {
	sw := tpmtest.Start(t)
	_, img, key := luksImage(t)
	if _, _, err := runIn(t, "", append(append([]string{"luks", "format", "-q", "--key-file", key}, fastKDF...), img)...); err != nil {
		t.Fatal(err)
	}
	epoch := func(args ...string) (string, error) {
		out, _, err := runIn(t, "", append(append([]string{"epoch"}, args...), "--key-file", key, "--tpm", sw.Device(), img)...)
		return strings.TrimSpace(out), err
	}
	if out, err := epoch("advance"); err != nil || !strings.HasPrefix(out, "epoch advanced to ") {
		t.Fatalf("first advance: %q %v", out, err)
	}
	old, _ := os.ReadFile(img)
	if _, err := epoch("advance"); err != nil {
		t.Fatal(err)
	}
	out, err := epoch("show", "--json")
	if err != nil || !strings.Contains(out, `"epoch": 3`) || !strings.Contains(out, `"counter": 3`) {
		t.Fatalf("show: %s %v", out, err)
	}
	// The copy from before the last advance is now refused.
	if err := os.WriteFile(img, old, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := epoch("advance"); !errors.Is(err, provision.ErrRolledBack) {
		t.Errorf("advance of an old copy: %v, want ErrRolledBack", err)
	}
	if out, err := epoch("show"); err != nil || out != "epoch 2, vTPM counter 3" {
		t.Errorf("show of the old copy: %q %v", out, err)
	}
}
