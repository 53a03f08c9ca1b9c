//go:build !confidisk_guest

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/confidisk/confidisk/attest"
	"github.com/confidisk/confidisk/broker"
	"github.com/confidisk/confidisk/broker/api"
	"github.com/confidisk/confidisk/broker/brokertest"
	"github.com/confidisk/confidisk/broker/client"
	"github.com/confidisk/confidisk/tpm"
	"github.com/confidisk/confidisk/tpm/tpmtest"
)

// buildServeBinary builds ./cmd/confidisk once per test into a temporary
// directory, with the insecure test verifier (-tags confidisk_insecure).
func buildServeBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "confidisk")
	cmd := exec.Command("go", "build", "-tags", "confidisk_insecure", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// serveProc is a running `confidisk serve`.
type serveProc struct {
	cmd     *exec.Cmd
	url     string
	line    string
	done    chan struct{} // closed when the process has been waited for
	waitErr error
	stderr  *bytes.Buffer
}

// wait waits for the process to exit and returns its status.
func (p *serveProc) wait() error {
	<-p.done
	return p.waitErr
}

// startServe starts the binary with args and waits for its "listening" line.
func startServe(t *testing.T, bin string, env []string, args ...string) *serveProc {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &serveProc{cmd: cmd, done: make(chan struct{}), stderr: &bytes.Buffer{}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		io.Copy(io.Discard, stdout)
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	select {
	case line, ok := <-lines:
		if !ok {
			err := p.wait()
			t.Fatalf("confidisk serve exited before listening (%v):\n%s", err, p.stderr)
		}
		p.line = line
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		p.wait()
		t.Fatalf("confidisk serve did not print where it listens:\n%s", p.stderr)
	}
	const prefix = "confidisk serve: listening on "
	rest, ok := strings.CutPrefix(p.line, prefix)
	if !ok {
		t.Fatalf("first line %q does not start with %q", p.line, prefix)
	}
	p.url, _, _ = strings.Cut(rest, " ")
	return p
}

// serveClient is a client of the broker at url with the generated
// certificate in data pinned.
func serveClient(t *testing.T, data, url string) *client.Client {
	t.Helper()
	cfg, err := client.TLSConfig(broker.TLSPaths(filepath.Join(data, "tls")).ServerCert, "", "")
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(url, client.Options{TLS: cfg, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// evidenceFor gets a nonce and test evidence for vol (key id abcd, as registered).
func evidenceFor(ctx context.Context, c *client.Client, vol string) ([]byte, []byte, error) {
	n, err := c.Nonce(ctx)
	if err != nil {
		return nil, nil, err
	}
	ev, err := brokertest.Evidence{Nonce: n.Nonce, Volume: vol, KeyID: "abcd"}.Marshal()
	return n.Nonce, ev, err
}

// TestServeDefaults starts `confidisk serve` with only --listen (port 0, so
// that tests never clash): the data directory defaults under
// $XDG_STATE_HOME, certificates are generated, /healthz answers 200, and
// SIGTERM stops it cleanly.
func TestServeDefaults(t *testing.T) {
	bin := buildServeBinary(t)
	state := t.TempDir()
	p := startServe(t, bin, []string{"XDG_STATE_HOME=" + state}, "--listen", "127.0.0.1:0")
	data := filepath.Join(state, "confidisk")
	if want := "(store: bolt " + filepath.Join(data, "broker.db") + ", data: " + data + ")"; !strings.HasSuffix(p.line, want) {
		t.Errorf("listening line %q does not end in %q", p.line, want)
	}
	if err := serveClient(t, data, p.url).Healthy(context.Background()); err != nil {
		t.Errorf("GET /healthz: %v", err)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(); err != nil {
		t.Errorf("after SIGTERM: %v\n%s", err, p.stderr)
	}
	if !strings.Contains(p.stderr.String(), `"msg":"stopped"`) {
		t.Errorf("no clean stop in the log:\n%s", p.stderr)
	}
}

func TestServeUsageErrors(t *testing.T) {
	tests := [][]string{
		{"serve", "--store", "sqlite"},
		{"serve", "--store", "postgres"},
		{"serve", "--verifier", "yes"},
		{"serve", "--listen", "nonsense"},
		{"serve", "--tls-cert", "x.crt"},
		{"serve", "--verifier", "tpm"},
		{"serve", "--verifier", "insecure-test", "--policy", "p.json"},
		{"serve", "--verifier", "insecure-test"}, // without CONFIDISK_INSECURE_TEST_VERIFIER=1
		{"serve", "--rate-limit", "-1"},
		{"serve", "--max-in-flight", "0"},
		{"serve", "--max-connections", "0"},
	}
	for _, args := range tests {
		_, _, err := runIn(t, "", append(args, "--data", t.TempDir())...)
		if _, ok := err.(usageError); !ok {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}

// TestServeCrashEpochs kills the broker with SIGKILL while a client streams
// epoch advances, restarts it on the same data directory and checks that
// no acknowledged advance was lost and none was applied twice: the stored
// epoch is the number of acknowledged advances, or one more when the
// advance in flight at the kill had committed.
func TestServeCrashEpochs(t *testing.T) {
	bin := buildServeBinary(t)
	data := t.TempDir()
	args := []string{"--listen", "127.0.0.1:0", "--data", data, "--verifier", "insecure-test", "--rate-limit", "0"}
	insecure := []string{insecureTestEnv + "=1"}
	const vol = "11111111-2222-4333-8444-555555555555"
	const kills = 3

	p := startServe(t, bin, insecure, args...)
	bg := context.Background()
	c := serveClient(t, data, p.url)
	n, ev, err := evidenceFor(bg, c, vol)
	if err != nil {
		t.Fatal(err)
	}
	reg := api.RegisterRequest{Nonce: n, Evidence: ev, Volume: api.VolumeSpec{UUID: vol, KeyID: "abcd"}}
	if _, err := c.Register(bg, reg); err != nil {
		t.Fatalf("register: %v", err)
	}

	acked := uint64(0) // advances the broker acknowledged, over all runs
	for round := range kills {
		var ackedNow atomic.Uint64
		ctx, stop := context.WithCancel(context.Background())
		streamDone := make(chan error, 1)
		start := acked
		go func() {
			cur := start
			for ctx.Err() == nil {
				n, ev, err := evidenceFor(bg, c, vol)
				if err != nil {
					streamDone <- err
					return
				}
				if err := c.AdvanceEpoch(bg, vol, n, ev, cur, cur+1); err != nil {
					streamDone <- err
					return
				}
				cur++
				ackedNow.Store(cur - start)
			}
			streamDone <- nil
		}()
		// Let some advances through, then kill mid-stream.
		for ackedNow.Load() < uint64(20+10*round) {
			select {
			case err := <-streamDone:
				t.Fatalf("round %d: stream ended before the kill: %v", round, err)
			case <-time.After(5 * time.Millisecond):
			}
		}
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		p.wait()
		streamErr := <-streamDone
		stop()
		if streamErr == nil {
			t.Fatalf("round %d: the stream did not notice the kill", round)
		}
		acked += ackedNow.Load()

		p = startServe(t, bin, insecure, args...)
		c = serveClient(t, data, p.url)
		got, err := c.Epoch(bg, vol)
		if err != nil {
			t.Fatalf("round %d: epoch after restart: %v", round, err)
		}
		if got < acked || got > acked+1 {
			t.Fatalf("round %d: epoch %d after restart, want %d acknowledged advances (+1 in flight at most)", round, got, acked)
		}
		t.Logf("round %d: %d acknowledged advances, stored epoch %d", round, acked, got)
		// An advance that committed without an answer counts from here on.
		acked = got
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(); err != nil {
		t.Errorf("final shutdown: %v\n%s", err, p.stderr)
	}
}

// TestServeVerifierTPM runs `confidisk serve --policy FILE` (so --verifier
// tpm) and posts evidence a swtpm guest issued with attest.Issuer: the
// broker answers the claims of its measured volume, and refuses evidence
// whose PCR 7 the policy does not allow.
func TestServeVerifierTPM(t *testing.T) {
	const vol = "0b6f4f3e-7d0c-4c1a-9a57-5c3c2b1e9f10"
	tp := tpmtest.Start(t).Open()
	logPath := filepath.Join(t.TempDir(), "tpm2-measure.log")
	vk := bytes.Repeat([]byte("k"), 64)
	if _, err := tpm.MeasureVolumeKey(tp, vk, "state", vol, tpm.MeasureOptions{LogPath: logPath, BootID: strings.Repeat("0", 32), Timestamp: 1}); err != nil {
		t.Fatal(err)
	}
	iss, err := attest.NewIssuer(tp, attest.IssuerOptions{PCRs: []int{7}, MeasureLog: logPath, FirmwareLog: "-"})
	if err != nil {
		t.Fatal(err)
	}
	bin := buildServeBinary(t)
	data := t.TempDir()
	policy := filepath.Join(data, "policy.json")
	if err := os.WriteFile(policy, []byte(`{"version":1,"pcrs":{"7":["`+strings.Repeat("00", 32)+`"]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, bin, nil, "--listen", "127.0.0.1:0", "--data", data, "--policy", policy)
	c := serveClient(t, data, p.url)

	post := func() (*api.Claims, error) {
		n, err := c.Nonce(context.Background())
		if err != nil {
			return nil, err
		}
		e, err := iss.Issue(context.Background(), n.Nonce, nil)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return c.Verify(context.Background(), n.Nonce, ev)
	}
	cl, err := post()
	if err != nil {
		t.Fatalf("POST /v1/evidence: %v\n%s", err, p.stderr)
	}
	if cl.Volume != vol || cl.KeyID != tpm.FixateValue(vk, "state", vol) {
		t.Errorf("claims %+v, want volume %s with key id %s", cl, vol, tpm.FixateValue(vk, "state", vol))
	}
	if !strings.Contains(p.stderr.String(), "pins no attestation keys") {
		t.Errorf("no warning about an unpinned attestation key in the log:\n%s", p.stderr)
	}

	d := bytes.Repeat([]byte{1}, 32)
	if err := tpm.ExtendPCR(tp, 7, map[tpm.Bank][]byte{tpm.SHA256: d}); err != nil {
		t.Fatal(err)
	}
	var ce *client.Error
	if _, err := post(); !errors.As(err, &ce) || ce.Status != http.StatusForbidden || !strings.Contains(err.Error(), "not allowed by the policy") {
		t.Errorf("evidence with another pcr 7: %v, want 403 naming the policy", err)
	}

	// The operator adds the new value and reloads (SIGHUP): accepted, no
	// restart. Then a broken edit: refused, the policy in force stays.
	sum := sha256.Sum256(append(make([]byte, 32), d...))
	reload := func(content, want string) {
		t.Helper()
		if err := os.WriteFile(policy, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		for i := 0; !strings.Contains(p.stderr.String(), want); i++ {
			if i == 200 {
				t.Fatalf("no %q in the log after SIGHUP:\n%s", want, p.stderr)
			}
			time.Sleep(25 * time.Millisecond)
		}
	}
	reload(`{"version":1,"pcrs":{"7":["`+strings.Repeat("00", 32)+`","`+hex.EncodeToString(sum[:])+`"]}}`, "policy reloaded")
	if _, err := post(); err != nil {
		t.Errorf("evidence with the new pcr 7 after the reload: %v", err)
	}
	reload(`{"version":1,"pcrs":{}}`, "policy reload refused")
	if _, err := post(); err != nil {
		t.Errorf("a refused reload changed the policy in force: %v", err)
	}
}
