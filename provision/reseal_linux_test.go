package provision

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/confidisk/confidisk/enroll"
	"github.com/confidisk/confidisk/internal/faultdev"
	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/tpm"
	"github.com/confidisk/confidisk/tpm/tpmtest"
)

// sealedVolume is a state volume as first boot leaves it, in memory: the
// recovery passphrase "recovery" in keyslot 0, the volume key sealed to
// swtpm's PCR 7 and PCR 15 at zero (with signingKey, to PCR 11 as signed
// by it too) in keyslot 1, authenticated metadata at step complete, and
// the fixation digest in the vTPM.
func sealedVolume(t *testing.T, tp transport.TPM, signingKey []byte) (img []byte, vk []byte) {
	t.Helper()
	d := faultdev.New(make([]byte, 20<<20))
	h, vk, err := luks2.Format(d, 20<<20, []byte("recovery"), luks2.FormatOptions{PBKDF: luks2.PBKDF{Type: "pbkdf2", Hash: "sha512", Iterations: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := enroll.AddEnrollment(tp, d, h, vk, enroll.EnrollOptions{SealOptions: stateSealOptions([]int{7}, signingKey), Keyslot: -1, TokenID: -1}); err != nil {
		t.Fatal(err)
	}
	pt := &provisionToken{Step: StepComplete, RW: RWOverlay, RecoveryKeyslot: 0, Settings: &Settings{Anchor: "tpm", PCRs: []int{7}, TEE: "none"}}
	if err := reauthWrite(d, "", h, vk, pt); err != nil {
		t.Fatal(err)
	}
	if err := writeFixation(tp, fixationDigest(t, vk, h)); err != nil {
		t.Fatal(err)
	}
	return d.Durable(), vk
}

func fixationDigest(t *testing.T, vk []byte, h *luks2.Header) []byte {
	t.Helper()
	b, err := hex.DecodeString(tpm.FixateValue(vk, StateName, h.UUID))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func rsaPublicPEM(t *testing.T) []byte {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// opens reports whether the vTPM unseals a keyslot of img, and checks
// that the recovery passphrase still opens it and its metadata verifies.
func opens(t *testing.T, tp transport.TPM, img []byte) (bool, *luks2.Header) {
	t.Helper()
	h, _, err := luks2.Read(bytes.NewReader(img))
	if err != nil {
		t.Fatalf("the header does not read: %v", err)
	}
	vk, _, err := h.Unlock(bytes.NewReader(img), []byte("recovery"), -1)
	if err != nil {
		t.Fatalf("the recovery passphrase no longer opens: %v", err)
	}
	if err := VerifyMetadata("", h, vk); err != nil {
		t.Fatalf("the metadata no longer verifies: %v", err)
	}
	_, _, err = enroll.UnlockWithToken(tp, bytes.NewReader(img), h, -1, tpm.UnsealOptions{})
	return err == nil, h
}

func extend7(t *testing.T, tp transport.TPM) {
	t.Helper()
	if err := tpm.ExtendPCR(tp, 7, map[tpm.Bank][]byte{tpm.SHA256: make([]byte, 32)}); err != nil {
		t.Fatal(err)
	}
}

// TestReseal: after PCR 7 changed (the recovery case) the vTPM no longer
// unseals the volume; Reseal seals it again to the new value, the old
// keyslot and token gone, the metadata verifying with the recorded PCRs
// updated.
func TestReseal(t *testing.T) {
	sw := tpmtest.Start(t)
	tp := sw.Open()
	img, vk := sealedVolume(t, tp, nil)
	extend7(t, tp)
	if ok, _ := opens(t, tp, img); ok {
		t.Fatal("the vTPM unseals after PCR 7 changed")
	}
	d := faultdev.New(img)
	h, _, _ := luks2.Read(d)
	res, err := Reseal(tp, d, "", h, vk, ResealOptions{PCRs: []int{4, 7}})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(&ResealResult{Keyslot: 2, Token: 2, Removed: []int{1}, PCRs: []int{4, 7}}, res); d != "" {
		t.Errorf("result (-want +got):\n%s", d)
	}
	ok, h := opens(t, tp, d.Durable())
	if !ok {
		t.Fatal("the vTPM does not unseal the resealed volume")
	}
	if h.Metadata.Keyslots[1] != nil || len(h.Metadata.Tokens) != 2 {
		t.Errorf("keyslots %v, tokens %d: want the old keyslot and its token gone", h.Metadata.Keyslots, len(h.Metadata.Tokens))
	}
	if got := reparse(t, h).Settings.PCRs; !cmp.Equal(got, []int{4, 7}) {
		t.Errorf("recorded PCRs %v, want [4 7]", got)
	}
	// The new seal binds PCR 4 and PCR 7 as they are now.
	if err := tpm.ExtendPCR(tp, 4, map[tpm.Bank][]byte{tpm.SHA256: make([]byte, 32)}); err != nil {
		t.Fatal(err)
	}
	if ok, _ := opens(t, tp, d.Durable()); ok {
		t.Error("the vTPM unseals after PCR 4 changed")
	}
}

// TestResealRefuses: each refusal names what is wrong and writes nothing.
func TestResealRefuses(t *testing.T) {
	sw := tpmtest.Start(t)
	tp := sw.Open()
	key := rsaPublicPEM(t)
	tests := []struct {
		name    string
		signed  bool
		setup   func(t *testing.T, h *luks2.Header, vk []byte)
		o       ResealOptions
		wantErr error
	}{
		{name: "fewer pcrs", o: ResealOptions{PCRs: []int{4}}, wantErr: ErrWeakerSeal},
		{name: "no pcrs", o: ResealOptions{PCRs: []int{}}, wantErr: ErrWeakerSeal},
		{name: "pcr 15", o: ResealOptions{PCRs: []int{7, 15}}, wantErr: ErrBadConfig},
		{name: "value of an unsealed pcr", o: ResealOptions{PCRValues: map[int][]byte{4: make([]byte, 32)}}, wantErr: ErrBadConfig},
		{name: "signing key dropped", signed: true, wantErr: ErrWeakerSeal},
		{name: "another volume's vTPM", o: ResealOptions{Fixate: true}, setup: func(t *testing.T, h *luks2.Header, vk []byte) {
			if err := writeFixation(tp, bytes.Repeat([]byte{0xcd}, 32)); err != nil {
				t.Fatal(err)
			}
		}, wantErr: ErrFixationMismatch},
		{name: "a zeroed digest", setup: func(t *testing.T, h *luks2.Header, vk []byte) {
			if err := writeFixation(tp, make([]byte, 32)); err != nil {
				t.Fatal(err)
			}
		}, wantErr: ErrFixationMismatch},
		{name: "metadata the host rewrote", setup: func(t *testing.T, h *luks2.Header, vk []byte) {
			pt := reparse(t, h)
			pt.Settings.PCRs = []int{}
			if err := setProvisionToken(h, pt); err != nil {
				t.Fatal(err)
			}
		}, o: ResealOptions{AllowWeaker: true}, wantErr: ErrMetadataTampered},
		{name: "mac stripped", setup: func(t *testing.T, h *luks2.Header, vk []byte) {
			pt := reparse(t, h)
			pt.Version, pt.MAC = 1, nil
			if err := setProvisionToken(h, pt); err != nil {
				t.Fatal(err)
			}
		}, wantErr: ErrMetadataTampered},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var sk []byte
			if tc.signed {
				sk = key
			}
			img, vk := sealedVolume(t, tp, sk)
			d := faultdev.New(img)
			h, _, _ := luks2.Read(d)
			if tc.setup != nil {
				tc.setup(t, h, vk)
			}
			before := d.Durable()
			_, err := Reseal(tp, d, "", h, vk, tc.o)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Reseal: %v, want %v", err, tc.wantErr)
			}
			if !bytes.Equal(before, d.Flushed()) {
				t.Error("a refused reseal wrote to the volume")
			}
		})
	}
}

// TestResealFixateAndSigned: a replaced vTPM (no fixation digest) is
// refused unless Fixate, which stores the volume's digest; a signed volume
// resealed with the key keeps PCR 11 bound as signed.
func TestResealFixateAndSigned(t *testing.T) {
	sw := tpmtest.Start(t)
	tp := sw.Open()
	key := rsaPublicPEM(t)
	img, vk := sealedVolume(t, tp, key)
	fresh := tpmtest.Start(t).Open() // the replaced vTPM
	d := faultdev.New(img)
	h, _, _ := luks2.Read(d)
	if _, err := Reseal(fresh, d, "", h, vk, ResealOptions{PCRPublicKey: key}); !errors.Is(err, ErrNoFixation) {
		t.Fatalf("a vTPM without a fixation digest: %v, want ErrNoFixation", err)
	}
	res, err := Reseal(fresh, d, "", h, vk, ResealOptions{PCRPublicKey: key, Fixate: true})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Fixated || !cmp.Equal(res.PolicyKeyPCRs, []int{11}) {
		t.Errorf("result %+v: want fixated and PCR 11 signed", res)
	}
	if err := checkFixation(fresh, tpm.FixateValue(vk, StateName, h.UUID)); err != nil {
		t.Errorf("the fixation digest: %v", err)
	}
	h2, _, _ := luks2.Read(bytes.NewReader(d.Durable()))
	for id, raw := range h2.Metadata.Tokens {
		if tk, err := tpm.ParseToken(raw); err == nil && !bytes.Equal(tk.Pubkey, key) {
			t.Errorf("token %d is not sealed to the signing key", id)
		}
	}
}

// TestResealSurvivesFaults cuts the power at every write and sync of a
// reseal (the cache lost, kept, or torn) and fails every write in turn:
// after each, the header reads, the recovery passphrase opens, the
// metadata verifies, and the vTPM unseals a keyslot (the old or the new).
func TestResealSurvivesFaults(t *testing.T) {
	sw := tpmtest.Start(t)
	tp := sw.Open()
	img, vk := sealedVolume(t, tp, nil)
	run := func(d *faultdev.Disk) error {
		h, _, err := luks2.Read(d)
		if err != nil {
			return err
		}
		_, err = Reseal(tp, d, "", h, vk, ResealOptions{})
		return err
	}
	clean := faultdev.New(img)
	if err := run(clean); err != nil {
		t.Fatal(err)
	}
	events, writes := clean.Events(), clean.Writes()
	check := func(what string, after []byte) {
		t.Helper()
		if ok, _ := opens(t, tp, after); !ok {
			t.Fatalf("%s: the vTPM unseals no keyslot", what)
		}
	}
	runs := 0
	for n := range events {
		for _, m := range []faultdev.Mode{faultdev.Cache, faultdev.WriteThrough, faultdev.Torn} {
			d := faultdev.New(img)
			d.CutAt(n, m, uint64(n))
			run(d)
			check(fmt.Sprintf("cut at event %d/%d (%v)", n, events, m), d.Durable())
			runs++
		}
	}
	for n := range writes {
		d := faultdev.New(img)
		d.FailWriteAt(n)
		if run(d) == nil {
			t.Fatalf("EIO at write %d: the reseal succeeded", n)
		}
		check(fmt.Sprintf("EIO at write %d/%d", n, writes), d.Flushed())
		runs++
	}
	t.Logf("%d writes, %d events: %d faults injected", writes, events, runs)
}
