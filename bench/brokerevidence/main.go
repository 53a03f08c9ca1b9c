// Command brokerevidence prepares real attestation evidence for
// bench/broker.sh, before the timing: for each of -aks software TPMs
// (swtpm, each its own endorsement seed, so its own attestation key) it
// extends PCR 7 as firmware would and writes the matching TCG firmware event
// log, measures a state volume's key into PCR 15 with systemd's log record,
// and then quotes PCRs 0, 4, 7 and 15 over nonces minted from the broker's
// key-encryption key (broker.MintNonce), -n in all. It writes one
// api.EvidenceRequest per line to -out and the policy that accepts them (the
// PCR values, every attestation key pinned) to -policy.
//
// The evidence is what `confidisk serve --policy` checks in full
// (attest.Validator: quote signature, PCR digest, both logs replayed, the
// binding, the policy); only the hardware (SEV-SNP/TDX report) is missing.
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/confidisk/confidisk/attest"
	"github.com/confidisk/confidisk/broker"
	"github.com/confidisk/confidisk/broker/api"
	"github.com/confidisk/confidisk/tpm"
)

type options struct {
	kek, out, policy string
	n, aks, workers  int
	ttl              time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.kek, "kek", "", "the broker's key-encryption key file (created if missing; required)")
	flag.StringVar(&o.out, "out", "", "evidence file to write, one api.EvidenceRequest per line (required)")
	flag.StringVar(&o.policy, "policy", "", "policy file to write (required)")
	flag.IntVar(&o.n, "n", 1000, "evidence documents in all")
	flag.IntVar(&o.aks, "aks", 64, "distinct attestation keys (software TPMs)")
	flag.IntVar(&o.workers, "workers", 2, "TPMs quoting at once")
	flag.DurationVar(&o.ttl, "ttl", time.Hour, "lifetime of the minted nonces")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "brokerevidence:", err)
		os.Exit(1)
	}
}

// result is what one TPM produced.
type result struct {
	lines [][]byte
	ak    string
	pcrs  map[int]string
	err   error
}

func run(o options) error {
	if o.kek == "" || o.out == "" || o.policy == "" || o.n < 1 || o.aks < 1 || o.workers < 1 {
		return errors.New("need -kek, -out, -policy, -n ≥ 1, -aks ≥ 1, -workers ≥ 1")
	}
	kek, err := broker.LoadOrCreateKEK(o.kek)
	if err != nil {
		return err
	}
	start := time.Now()
	results := make([]result, o.aks)
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range o.workers {
		wg.Go(func() {
			for a := range jobs {
				count := o.n/o.aks + btoi(a < o.n%o.aks)
				results[a] = oneTPM(a, count, kek, time.Now().Add(o.ttl))
			}
		})
	}
	for a := range o.aks {
		jobs <- a
	}
	close(jobs)
	wg.Wait()
	if err := write(o, results); err != nil {
		return err
	}
	fmt.Printf("brokerevidence: %d evidence documents from %d attestation keys in %.1f s\n", o.n, o.aks, time.Since(start).Seconds())
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func write(o options, results []result) error {
	f, err := os.Create(o.out)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	var aks []string
	for _, r := range results {
		if r.err != nil {
			return r.err
		}
		aks = append(aks, r.ak)
		for _, l := range r.lines {
			w.Write(l)
			w.WriteByte('\n')
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	pcrs := map[string][]string{}
	for i, v := range results[0].pcrs {
		if i != tpm.VolumeKeyPCR {
			pcrs[strconv.Itoa(i)] = []string{v}
		}
	}
	pol, err := json.Marshal(map[string]any{"version": 1, "bank": "sha256", "pcrs": pcrs, "attestation_keys": aks})
	if err != nil {
		return err
	}
	return os.WriteFile(o.policy, pol, 0o644)
}

// oneTPM starts swtpm number a, prepares it like a booted guest and quotes
// count fresh nonces.
func oneTPM(a, count int, kek []byte, expires time.Time) result {
	dir, err := os.MkdirTemp("", "brokerevidence-")
	if err != nil {
		return result{err: err}
	}
	defer os.RemoveAll(dir)
	stop, err := startSWTPM(dir)
	if err != nil {
		return result{err: err}
	}
	defer stop()
	tp, err := tpm.Open(tpm.Device{Path: filepath.Join(dir, "tpm.sock"), SWTPM: true})
	if err != nil {
		return result{err: err}
	}
	defer tp.Close()
	iss, err := bootGuest(tp, dir, a)
	if err != nil {
		return result{err: fmt.Errorf("tpm %d: %w", a, err)}
	}
	var r result
	for range count {
		line, ev, err := quote(iss, kek, expires)
		if err != nil {
			return result{err: fmt.Errorf("tpm %d: %w", a, err)}
		}
		r.lines = append(r.lines, line)
		r.ak = attest.AKFingerprint(ev.AKPublic)
		r.pcrs = map[int]string{}
		for i, v := range ev.PCRs {
			r.pcrs[i] = hex.EncodeToString(v)
		}
	}
	return r
}

func quote(iss *attest.Issuer, kek []byte, expires time.Time) ([]byte, *attest.Evidence, error) {
	n, err := broker.MintNonce(kek, expires)
	if err != nil {
		return nil, nil, err
	}
	ev, err := iss.Issue(context.Background(), n, nil)
	if err != nil {
		return nil, nil, err
	}
	raw, err := ev.Marshal()
	if err != nil {
		return nil, nil, err
	}
	line, err := json.Marshal(api.EvidenceRequest{Nonce: n, Evidence: raw})
	return line, ev, err
}

// bootGuest extends PCR 7 and writes its firmware log, measures volume a's
// key into PCR 15 with its log record, and returns the guest's issuer.
func bootGuest(tp transport.TPM, dir string, a int) (*attest.Issuer, error) {
	d := sha256.Sum256([]byte("secure boot state"))
	if err := tpm.ExtendPCR(tp, 7, map[tpm.Bank][]byte{tpm.SHA256: d[:]}); err != nil {
		return nil, err
	}
	fwLog := filepath.Join(dir, "binary_bios_measurements")
	if err := os.WriteFile(fwLog, firmwareLog(7, 0x80000001 /* EV_EFI_VARIABLE_DRIVER_CONFIG */, d[:]), 0o644); err != nil {
		return nil, err
	}
	measureLog := filepath.Join(dir, "tpm2-measure.log")
	uuid := fmt.Sprintf("%08x-0000-4000-8000-000000000000", a)
	vk := sha256.Sum256([]byte(uuid))
	if _, err := tpm.MeasureVolumeKey(tp, vk[:], "state", uuid, tpm.MeasureOptions{
		LogPath: measureLog, BootID: strings.Repeat("ab", 16), Timestamp: 1}); err != nil {
		return nil, err
	}
	return attest.NewIssuer(tp, attest.IssuerOptions{PCRs: []int{0, 4, 7}, MeasureLog: measureLog, FirmwareLog: fwLog})
}

// firmwareLog is a crypto-agile TCG event log (PFP section 10) with the
// sha256 bank only: the Spec ID Event03, then one event extending pcr with
// digest.
func firmwareLog(pcr int, eventType uint32, digest []byte) []byte {
	le := binary.LittleEndian
	var spec []byte
	spec = append(spec, "Spec ID Event03\x00"...)
	spec = le.AppendUint32(spec, 0)      // platformClass
	spec = append(spec, 0, 2, 2, 2)      // version 2.0 errata 2, uintnSize 2 (64-bit)
	spec = le.AppendUint32(spec, 1)      // numberOfAlgorithms
	spec = le.AppendUint16(spec, 0x000b) // sha256
	spec = le.AppendUint16(spec, 32)
	spec = append(spec, 0) // vendorInfoSize
	var b []byte
	b = le.AppendUint32(b, 0)
	b = le.AppendUint32(b, 3) // EV_NO_ACTION
	b = append(b, make([]byte, 20)...)
	b = le.AppendUint32(b, uint32(len(spec)))
	b = append(b, spec...)
	data := []byte("SecureBoot")
	b = le.AppendUint32(b, uint32(pcr))
	b = le.AppendUint32(b, eventType)
	b = le.AppendUint32(b, 1)
	b = le.AppendUint16(b, 0x000b)
	b = append(b, digest...)
	b = le.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

// startSWTPM runs swtpm with its state and sockets in dir (absolute) and
// waits for its data socket.
func startSWTPM(dir string) (func(), error) {
	sock := filepath.Join(dir, "tpm.sock")
	cmd := exec.Command("swtpm", "socket", "--tpm2", "--tpmstate", "dir="+dir,
		"--server", "type=unixio,path="+sock, "--ctrl", "type=unixio,path="+sock+".ctrl",
		"--flags", "not-need-init,startup-clear")
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start swtpm: %w", err)
	}
	stop := func() {
		cmd.Process.Kill()
		cmd.Wait()
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return nil, errors.New("swtpm did not open its socket within 10 s")
		}
	}
}
