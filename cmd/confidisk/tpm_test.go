package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/confidisk/confidisk/internal/testutil"
	"github.com/confidisk/confidisk/tpm"
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

// openPTY opens a pseudo-terminal and returns its terminal side.
func openPTY(t *testing.T) *os.File {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		testutil.Missing(t, "a pseudo-terminal (/dev/ptmx)", err.Error())
	}
	t.Cleanup(func() { ptmx.Close() })
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetUint32(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	pts, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pts.Close() })
	return pts
}

// runCLIStdout runs the CLI with stdout w and returns what it wrote to stderr.
func runCLIStdout(t *testing.T, w io.Writer, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var errOut bytes.Buffer
	root.SetOut(w)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.Execute()
	return errOut.String(), err
}

// TestTPMSRKCLI prints a fresh swtpm's SRK in both forms, checks that both
// parse to that SRK and that a secret sealed offline to it unseals there.
func TestTPMSRKCLI(t *testing.T) {
	sw := tpmtest.Start(t)
	var tpm2b bytes.Buffer
	stderr, err := runCLIStdout(t, &tpm2b, "tpm", "srk", "--tpm", sw.Device())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "created the srk at 0x81000001") {
		t.Errorf("no word of the srk being created: %q", stderr)
	}
	tp := sw.Open()
	srk, err := tpm.ReadSRK(tp)
	if err != nil {
		t.Fatalf("no srk after tpm srk: %v", err)
	}
	if !bytes.Equal(tpm2b.Bytes(), tpm.MarshalSRKPublic(&srk.Public)) {
		t.Fatalf("tpm srk printed %x, want the srk's TPM2B_PUBLIC", tpm2b.Bytes())
	}
	pemFile := filepath.Join(t.TempDir(), "srk.pem")
	if stderr, err := runCLIStdout(t, io.Discard, "tpm", "srk", "--tpm", sw.Device(), "--format", "pem", "-o", pemFile); err != nil || stderr != "" {
		t.Fatalf("tpm srk --format pem: %v, stderr %q", err, stderr)
	}
	for name, b := range map[string][]byte{"tpm2b": tpm2b.Bytes(), "pem": readFile(t, pemFile)} {
		pub, err := tpm.ParseSRKPublic(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		s, err := tpm.SealOffline(pub, []byte("offline"), tpm.SealOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := tpm.Unseal(tp, s, tpm.UnsealOptions{}); err != nil || string(got) != "offline" {
			t.Fatalf("%s: unseal of a secret sealed offline to the printed key: %q, %v", name, got, err)
		}
	}
	var ue usageError
	if _, err := runCLIStdout(t, openPTY(t), "tpm", "srk", "--tpm", sw.Device()); !errors.As(err, &ue) || !strings.Contains(err.Error(), "--output") {
		t.Fatalf("binary srk to a terminal: %v, want a usage error naming --output", err)
	}
	if _, err := runCLIStdout(t, io.Discard, "tpm", "srk", "--tpm", sw.Device(), "--format", "der"); !errors.As(err, &ue) {
		t.Fatalf("--format der: %v, want a usage error", err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
