package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/confidisk/confidisk/tpm/tpmtest"
)

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestTPMFixateCLI(t *testing.T) {
	kf := filepath.Join(t.TempDir(), "vk")
	if err := os.WriteFile(kf, []byte(strings.Repeat("0123456789abcdef", 4)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, "tpm", "fixate", "--key-file", kf, "--name", "root", "--uuid", "11111111-2222-3333-4444-555555555555")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := out, "31b2a9a3fb6b41741664a49a02515514eca9d4f773d9c59bd7546dc5a873ec66\n"; got != want {
		t.Fatalf("fixate printed %q, want %q", got, want)
	}
}

func TestTPMSealUnsealMeasureCLI(t *testing.T) {
	sw := tpmtest.Start(t)
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	tok := filepath.Join(dir, "token.json")
	if _, err := runCLI(t, "tpm", "seal", "--tpm", sw.Device(), "--pcrs", "7,15", "--in", secret, "--out", tok); err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI(t, "tpm", "seal", "--tpm", sw.Device(), "--pcrs", "7,15", "--in", secret, "--out", tok); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("seal over an existing token without --force: %v", err)
	}
	if _, err := runCLI(t, "tpm", "seal", "--tpm", sw.Device(), "--pcrs", "7,15", "--in", secret, "--out", tok, "--force"); err != nil {
		t.Fatal(err)
	}
	got := filepath.Join(dir, "got")
	if _, err := runCLI(t, "tpm", "unseal", "--tpm", sw.Device(), "--in", tok, "--out", got); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(got); string(b) != "s3cret" {
		t.Fatalf("unsealed %q", b)
	}
	out, err := runCLI(t, "tpm", "measure-volume", "--tpm", sw.Device(), "--key-file", secret, "--name", "root", "--uuid", "u", "--log", filepath.Join(dir, "log"), "--json")
	if err != nil || !strings.Contains(out, `"eventType": "volume-key"`) {
		t.Fatalf("measure-volume: %v\n%s", err, out)
	}
	if _, err := runCLI(t, "tpm", "unseal", "--tpm", sw.Device(), "--in", tok, "--out", got); err == nil || !strings.Contains(err.Error(), "pcr 15 was already extended") {
		t.Fatalf("unseal after measuring: %v", err)
	}
	out, err = runCLI(t, "tpm", "pcrs", "--tpm", sw.Device(), "--pcrs", "15", "--json")
	if err != nil || !strings.Contains(out, `"15"`) {
		t.Fatalf("pcrs: %v\n%s", err, out)
	}
	if _, err := runCLI(t, "tpm", "pcrs", "--tpm", "nonsense"); err == nil {
		t.Fatal("bad --tpm accepted")
	}
}

func TestTPMCounterCLI(t *testing.T) {
	sw := tpmtest.Start(t)
	if _, err := runCLI(t, "tpm", "counter", "define", "--tpm", sw.Device(), "--index", "0x01800100"); err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI(t, "tpm", "counter", "read", "--tpm", sw.Device(), "--index", "0x01800100"); err == nil || !strings.Contains(err.Error(), "never incremented") {
		t.Fatalf("read of a new counter: %v", err)
	}
	for _, want := range []string{"1\n", "2\n"} {
		out, err := runCLI(t, "tpm", "counter", "increment", "--tpm", sw.Device(), "--index", "0x01800100")
		if err != nil || out != want {
			t.Fatalf("increment printed %q, %v; want %q", out, err, want)
		}
	}
	out, err := runCLI(t, "tpm", "counter", "read", "--tpm", sw.Device(), "--index", "0x01800100", "--json")
	if err != nil || !strings.Contains(out, `"value": 2`) || !strings.Contains(out, `"index": "0x01800100"`) {
		t.Fatalf("read --json: %v\n%s", err, out)
	}
	for _, args := range [][]string{
		{"tpm", "counter", "read", "--tpm", sw.Device()},
		{"tpm", "counter", "read", "--tpm", sw.Device(), "--index", "0x81000001"},
		{"tpm", "counter", "read", "--tpm", sw.Device(), "--index", "seven"},
	} {
		var ue usageError
		if _, err := runCLI(t, args...); !errors.As(err, &ue) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}

func TestTPMQuoteCLI(t *testing.T) {
	sw := tpmtest.Start(t)
	dir := t.TempDir()
	qf := filepath.Join(dir, "quote.json")
	if _, err := runCLI(t, "tpm", "quote", "--tpm", sw.Device(), "--pcrs", "7,15", "--nonce", "c0ffee", "--out", qf); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, "tpm", "verify-quote", "--quote", qf, "--nonce", "c0ffee")
	if err != nil || !strings.Contains(out, "quote ok: sha256 pcrs [7 15]") || !strings.Contains(out, "reset count") {
		t.Fatalf("verify-quote: %v\n%s", err, out)
	}
	if _, err := runCLI(t, "tpm", "verify-quote", "--quote", qf, "--nonce", "beef"); err == nil || !strings.Contains(err.Error(), "nonce does not match") {
		t.Fatalf("verify-quote with another nonce: %v", err)
	}
	// A PCR value changed in the document.
	b, err := os.ReadFile(qf)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	doc["pcrValues"].(map[string]any)["15"] = strings.Repeat("11", 32)
	b, _ = json.Marshal(doc)
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI(t, "tpm", "verify-quote", "--quote", bad, "--nonce", "c0ffee"); err == nil || !strings.Contains(err.Error(), "pcr digest does not match") {
		t.Fatalf("verify-quote with a changed pcr value: %v", err)
	}
	var ue usageError
	if _, err := runCLI(t, "tpm", "quote", "--tpm", sw.Device(), "--pcrs", "7", "--nonce", "xyz"); !errors.As(err, &ue) {
		t.Fatalf("bad nonce: %v, want a usage error", err)
	}
}
