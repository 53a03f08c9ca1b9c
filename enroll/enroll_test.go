package enroll

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/confidisk/confidisk/internal/testutil"
	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/tpm"
	"github.com/confidisk/confidisk/tpm/tpmtest"
)

func newVolume(t *testing.T) (*os.File, *luks2.Header, []byte) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "vol.img"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	const size = 20 << 20
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	h, vk, err := luks2.Format(f, size, []byte("pw"), luks2.FormatOptions{PBKDF: luks2.PBKDF{Type: "pbkdf2", Iterations: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	return f, h, vk
}

func reread(t *testing.T, f *os.File) *luks2.Header {
	t.Helper()
	h, _, err := luks2.Read(f)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestEnrollAndUnlockWithToken(t *testing.T) {
	sw := tpmtest.Start(t)
	tp := sw.Open()
	f, h, vk := newVolume(t)
	slot, id, err := Enroll(tp, f, h, vk, EnrollOptions{SealOptions: tpm.SealOptions{PCRs: []int{7, 15}, PIN: []byte("1234")}, SaltPIN: true, Keyslot: -1, TokenID: -1})
	if err != nil {
		t.Fatal(err)
	}
	h = reread(t, f)
	var fields map[string]any
	if err := json.Unmarshal(h.Metadata.Tokens[id], &fields); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range fields {
		keys = append(keys, k)
	}
	want := []string{"keyslots", "tpm2-blob", "tpm2-pcr-bank", "tpm2-pcrs", "tpm2-pin", "tpm2-policy-hash", "tpm2_salt", "tpm2_srk", "type"}
	if diff := cmp.Diff(want, sortStrings(keys)); diff != "" {
		t.Errorf("token fields (-want +got):\n%s", diff)
	}
	k := h.Metadata.Keyslots[slot]
	if diff := cmp.Diff(luks2.KDF{Type: "pbkdf2", Hash: "sha512", Iterations: 1000}, luks2.KDF{Type: k.KDF.Type, Hash: k.KDF.Hash, Iterations: k.KDF.Iterations}); diff != "" {
		t.Errorf("keyslot kdf (-want +got):\n%s", diff)
	}
	got, gotSlot, err := UnlockWithToken(tp, f, h, -1, tpm.UnsealOptions{PIN: []byte("1234")})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, vk) || gotSlot != slot {
		t.Fatalf("unlocked keyslot %d with a different key, want keyslot %d", gotSlot, slot)
	}
	tk, err := tpm.ParseToken(h.Metadata.Tokens[id])
	if err != nil {
		t.Fatal(err)
	}
	wrong := []byte("0000")
	for !tpm.PINAuthUsable(wrong, tk.Salt) {
		wrong = append(wrong, '0')
	}
	if _, _, err := UnlockWithToken(tp, f, h, -1, tpm.UnsealOptions{PIN: wrong}); !errors.Is(err, tpm.ErrWrongPIN) {
		t.Fatalf("wrong pin: %v, want ErrWrongPIN", err)
	}
	if _, err := tpm.MeasureVolumeKey(tp, vk, "root", h.UUID, tpm.MeasureOptions{LogPath: "-"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := UnlockWithToken(tp, f, h, -1, tpm.UnsealOptions{PIN: []byte("1234")}); !errors.Is(err, tpm.ErrVolumeKeyMeasured) {
		t.Fatalf("after measuring: %v, want ErrVolumeKeyMeasured", err)
	}
	if cs, err := exec.LookPath("cryptsetup"); err == nil {
		if out, err := exec.Command(cs, "luksDump", f.Name()).CombinedOutput(); err != nil {
			t.Fatalf("cryptsetup luksDump of the enrolled volume: %v\n%s", err, out)
		}
	}
}

func sortStrings(s []string) []string {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}

// TestUnlockSystemdEnrolledVolume: systemd-cryptenroll (the oracle)
// enrolls against swtpm; this package unseals its token and opens the volume.
func TestUnlockSystemdEnrolledVolume(t *testing.T) {
	cryptenroll := testutil.LookPath(t, "systemd-cryptenroll", "systemd-cryptsetup libtss2-esys-3.0.2-0 libtss2-tcti-swtpm0")
	for _, pin := range []string{"", "4711"} {
		t.Run(map[bool]string{true: "without pin", false: "with pin"}[pin == ""], func(t *testing.T) {
			sw := tpmtest.Start(t)
			tp := sw.Open()
			extend(t, tp, 7, "secure boot state")
			f, _, vk := newVolume(t)
			args := []string{"--tpm2-device=swtpm:path=" + sw.Path(), "--tpm2-pcrs=7"}
			env := append(os.Environ(), "PASSWORD=pw")
			if pin != "" {
				args = append(args, "--tpm2-with-pin=yes")
				env = append(env, "NEWPIN="+pin)
			}
			cmd := exec.Command(cryptenroll, append(args, f.Name())...)
			cmd.Env = env
			if out, err := cmd.CombinedOutput(); err != nil {
				if bytes.Contains(out, []byte("TPM2 support is not installed")) || bytes.Contains(out, []byte("libtss2")) {
					testutil.Missing(t, "tpm2-tss for systemd-cryptenroll", "apt-get install -y libtss2-esys-3.0.2-0 libtss2-rc0 libtss2-mu0 libtss2-tcti-swtpm0")
				}
				t.Fatalf("systemd-cryptenroll: %v\n%s", err, out)
			}
			h := reread(t, f)
			got, _, err := UnlockWithToken(tp, f, h, -1, tpm.UnsealOptions{PIN: []byte(pin)})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, vk) {
				t.Fatal("unlocked a different volume key")
			}
			extend(t, tp, 7, "changed")
			if _, _, err := UnlockWithToken(tp, f, h, -1, tpm.UnsealOptions{PIN: []byte(pin)}); !errors.Is(err, tpm.ErrPCRMismatch) {
				t.Fatalf("after pcr 7 changed: %v, want ErrPCRMismatch", err)
			}
		})
	}
}

func extend(t *testing.T, tp transport.TPM, pcr int, data string) {
	t.Helper()
	d := sha256.Sum256([]byte(data))
	if err := tpm.ExtendPCR(tp, pcr, map[tpm.Bank][]byte{tpm.SHA256: d[:]}); err != nil {
		t.Fatal(err)
	}
}

// TestOfflineEnrollment seals a keyslot to swtpm A's SRK without A, as an
// image builder would, then opens the volume on A; B, another vTPM, cannot.
func TestOfflineEnrollment(t *testing.T) {
	a := tpmtest.Start(t).Open()
	extend(t, a, 7, "secure boot state")
	srk, _, err := tpm.GetOrCreateSRK(a)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := tpm.ParseSRKPublic(tpm.MarshalSRKPublic(&srk.Public))
	if err != nil {
		t.Fatal(err)
	}
	vals, err := tpm.ReadPCRs(a, tpm.SHA256, []int{7, 15})
	if err != nil {
		t.Fatal(err)
	}
	f, h, vk := newVolume(t)
	o := EnrollOptions{SealOptions: tpm.SealOptions{PCRs: []int{7, 15}, PCRValues: vals, PIN: []byte("1234")}, SaltPIN: true, Keyslot: -1, TokenID: -1}
	slot, id, err := AddOfflineEnrollment(f, h, vk, pub, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Write(f); err != nil {
		t.Fatal(err)
	}
	h = reread(t, f)
	tk, err := tpm.ParseToken(h.Metadata.Tokens[id])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(tk.SRK, srk.Serialize()) || tk.Keyslot != slot {
		t.Fatalf("token: srk %x keyslot %d; want the srk's serialization and keyslot %d", tk.SRK, tk.Keyslot, slot)
	}
	got, gotSlot, err := UnlockWithToken(a, f, h, id, tpm.UnsealOptions{PIN: []byte("1234")})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, vk) || gotSlot != slot {
		t.Fatalf("unlocked keyslot %d with a different key, want keyslot %d", gotSlot, slot)
	}
	b := tpmtest.Start(t).Open()
	if _, _, err := tpm.GetOrCreateSRK(b); err != nil {
		t.Fatal(err)
	}
	if _, _, err := UnlockWithToken(b, f, h, -1, tpm.UnsealOptions{PIN: []byte("1234")}); !errors.Is(err, tpm.ErrSRKMismatch) {
		t.Fatalf("unlock on another vtpm: %v, want ErrSRKMismatch", err)
	}
	delete(vals, 15)
	if _, _, err := AddOfflineEnrollment(f, h, vk, pub, o); err == nil || !strings.Contains(err.Error(), "pcr 15") {
		t.Fatalf("offline enrollment without pcr 15's value: %v", err)
	}
	if cs, err := exec.LookPath("cryptsetup"); err == nil {
		if out, err := exec.Command(cs, "luksDump", f.Name()).CombinedOutput(); err != nil {
			t.Fatalf("cryptsetup luksDump of the enrolled volume: %v\n%s", err, out)
		}
	}
}
