//go:build !confidisk_guest

package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/confidisk/confidisk/attest"
	"github.com/confidisk/confidisk/broker"
	"github.com/confidisk/confidisk/broker/api"
	"github.com/confidisk/confidisk/broker/brokertest"
	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/provision"
	"github.com/confidisk/confidisk/tpm"
	"github.com/confidisk/confidisk/tpm/tpmtest"
)

// createdVolume is a LUKS2 volume file whose header holds a creation record
// made by a swtpm guest, as first boot leaves it; it returns the path, the
// UUID and the key id.
func createdVolume(t *testing.T) (string, string, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Truncate(20 << 20)
	h, vk, err := luks2.Format(f, 20<<20, []byte("recovery"), luks2.FormatOptions{PBKDF: luks2.PBKDF{Type: "pbkdf2", Iterations: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	tp := tpmtest.Start(t).Open()
	defer tp.Close()
	log := filepath.Join(t.TempDir(), "tpm2-measure.log")
	if _, err := tpm.MeasureVolumeKey(tp, vk, provision.StateName, h.UUID, tpm.MeasureOptions{LogPath: log}); err != nil {
		t.Fatal(err)
	}
	iss, err := attest.NewIssuer(tp, attest.IssuerOptions{PCRs: []int{7}, MeasureLog: log, FirmwareLog: "-"})
	if err != nil {
		t.Fatal(err)
	}
	keyID := tpm.FixateValue(vk, provision.StateName, h.UUID)
	rec, err := iss.IssueCreation(context.Background(), keyID, h.UUID, provision.StateName)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := json.Marshal(map[string]any{"type": provision.CreationTokenType, "keyslots": []string{}, "record": rec})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.AddToken(tok, -1); err != nil {
		t.Fatal(err)
	}
	if err := h.Write(f); err != nil {
		t.Fatal(err)
	}
	return path, h.UUID, keyID
}

// TestBrokerCLI drives `confidisk broker` against a live broker whose
// verifier is attest.Validator (PCR 7 pinned to swtpm's zeros), with the
// certificates found through --data as on the broker's own machine.
func TestBrokerCLI(t *testing.T) {
	dev, uuid, keyID := createdVolume(t)
	pol, err := attest.ParsePolicy([]byte(`{"version":1,"pcrs":{"7":["` + strings.Repeat("00", 32) + `"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	v, err := attest.NewValidator(pol, attest.ValidatorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	l, err := brokertest.StartLocal(data, nil, func(c *broker.Config) { c.Verifier = v })
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cli := func(args ...string) (string, error) {
		out, _, err := runIn(t, "", append([]string{"broker", "--url", l.URL, "--data", data}, args...)...)
		return out, err
	}

	if out, err := cli("health"); err != nil || out != "ok\n" {
		t.Fatalf("health: %q %v", out, err)
	}
	out, err := cli("register-creation", dev)
	if err != nil || !strings.Contains(out, "volume "+uuid) || !strings.Contains(out, keyID) || !strings.Contains(out, `"pcrs"`) {
		t.Fatalf("register-creation: %q %v", out, err)
	}
	out, err = cli("volume", uuid, "--json")
	var got api.Volume
	if err != nil || json.Unmarshal([]byte(out), &got) != nil || got.UUID != uuid || got.KeyID != keyID {
		t.Fatalf("volume --json: %q %v", out, err)
	}
	if out, err := cli("volumes"); err != nil || !strings.Contains(out, uuid) {
		t.Errorf("volumes (operator): %q %v", out, err)
	}
	if out, err := cli("epoch", uuid); err != nil || out != "epoch 0\n" {
		t.Errorf("epoch: %q %v", out, err)
	}
	const pre = "6a1c9e0e-4f4b-4b7a-9d61-3a2b1c0d9e8f"
	if _, err := cli("register", "--uuid", pre, "--key-id", "abcd"); err != nil {
		t.Fatalf("register (operator): %v", err)
	}
	keyFile := filepath.Join(t.TempDir(), "key")
	os.WriteFile(keyFile, []byte(strings.Repeat("k", 64)), 0o600)
	if out, err := cli("put-key", pre, "--key-id", "abcd", "--key-file", keyFile); err != nil || !strings.Contains(out, "stored (64 bytes)") {
		t.Errorf("put-key: %q %v", out, err)
	}

	// Refusals name the broker's reason; a missing certificate says how
	// to give one.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"volume", "00000000-0000-4000-8000-000000000000"}, "volume_not_found"},
		{[]string{"register-creation", dev}, "volume_exists"},
		{[]string{"--cert", filepath.Join(data, "tls", "operator.crt"), "volumes"}, "--cert and --key go together"},
		{[]string{"--data", t.TempDir(), "health"}, "--ca"},
	} {
		if _, err := cli(tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}
