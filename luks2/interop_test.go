package luks2

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/internal/testutil"
)

const imageSize = 20 << 20

func cryptsetup(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	cs := testutil.LookPath(t, "cryptsetup", "cryptsetup-bin")
	cmd := exec.Command(cs, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func newImage(t *testing.T) (string, *os.File) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "luks.img")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(imageSize); err != nil {
		t.Fatal(err)
	}
	return path, f
}

// TestOpenCryptsetupHeaders formats with cryptsetup (every KDF, both sector
// sizes, two keyslots, a token) and opens and dumps with this package.
func TestOpenCryptsetupHeaders(t *testing.T) {
	vk := bytes.Repeat([]byte{0x5a, 0xc3}, 32)
	cases := []struct {
		name string
		args []string
	}{
		{"pbkdf2-4096", []string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--sector-size", "4096"}},
		{"pbkdf2-sha512-512", []string{"--pbkdf", "pbkdf2", "--hash", "sha512", "--pbkdf-force-iterations", "1000", "--sector-size", "512"}},
		{"argon2id", []string{"--pbkdf", "argon2id", "--pbkdf-force-iterations", "4", "--pbkdf-memory", "1024", "--pbkdf-parallel", "2"}},
		{"argon2i", []string{"--pbkdf", "argon2i", "--pbkdf-force-iterations", "4", "--pbkdf-memory", "2048", "--pbkdf-parallel", "1"}},
		{"aes-xts-256", []string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-size", "256"}},
		{"small-metadata", []string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--luks2-metadata-size", "64k", "--luks2-keyslots-size", "1m"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path, f := newImage(t)
			key := vk
			if tc.name == "aes-xts-256" {
				key = vk[:32]
			}
			vkFile := filepath.Join(t.TempDir(), "vk")
			os.WriteFile(vkFile, key, 0o600)
			args := append([]string{"luksFormat", "--type", "luks2", "--batch-mode", "--key-file", "-", "--volume-key-file", vkFile, "--label", "lbl"}, tc.args...)
			if out, err := cryptsetup(t, "first passphrase", append(args, path)...); err != nil {
				t.Fatalf("luksFormat: %v\n%s", err, out)
			}
			kf := filepath.Join(t.TempDir(), "k2")
			os.WriteFile(kf, []byte("second"), 0o600)
			if out, err := cryptsetup(t, "first passphrase", "luksAddKey", "--key-file", "-", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", path, kf); err != nil {
				t.Fatalf("luksAddKey: %v\n%s", err, out)
			}
			tok := filepath.Join(t.TempDir(), "tok.json")
			os.WriteFile(tok, []byte(`{"type":"confidisk-test","keyslots":["1"],"nested":{"a":[1,2]}}`), 0o600)
			if out, err := cryptsetup(t, "", "token", "import", "--json-file", tok, path); err != nil {
				t.Fatalf("token import: %v\n%s", err, out)
			}

			h, rep, err := Read(f)
			if err != nil {
				t.Fatal(err)
			}
			if rep.NeedsRepair() {
				t.Errorf("fresh cryptsetup header reported as needing repair: %+v", rep)
			}
			if h.Label != "lbl" {
				t.Errorf("label %q", h.Label)
			}
			for pass, slot := range map[string]int{"first passphrase": 0, "second": 1} {
				got, s, err := h.Unlock(f, []byte(pass), -1)
				if err != nil {
					t.Fatalf("unlock with %q: %v", pass, err)
				}
				if !bytes.Equal(got, key) || s != slot {
					t.Errorf("unlock with %q: slot %d key %x, want slot %d key %x", pass, s, got, slot, key)
				}
			}
			if _, _, err := h.Unlock(f, []byte("wrong"), -1); !errors.Is(err, ErrWrongPassphrase) {
				t.Errorf("wrong passphrase: %v", err)
			}
			want, err := cryptsetup(t, "", "luksDump", "--dump-json-metadata", path)
			if err != nil {
				t.Fatal(err)
			}
			got, err := h.DumpJSON()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, string(got)); diff != "" {
				t.Errorf("--dump-json-metadata (-cryptsetup +ours):\n%s", diff)
			}
			// Writing the header back (seqid+1) keeps cryptsetup happy.
			if err := h.Write(f); err != nil {
				t.Fatal(err)
			}
			if out, err := cryptsetup(t, "second", "open", "--test-passphrase", "--key-file", "-", path); err != nil {
				t.Fatalf("cryptsetup after our rewrite: %v\n%s", err, out)
			}
		})
	}
}

var saltLike = regexp.MustCompile(`"(salt|digest)":"[^"]*"`)

// TestCryptsetupOpensOurHeaders formats with this package and checks the
// result with cryptsetup: luksDump, --test-passphrase for every keyslot, the
// same JSON as a header cryptsetup formats with the same options (salts and
// digests aside).
func TestCryptsetupOpensOurHeaders(t *testing.T) {
	forced := PBKDF{Type: "pbkdf2", Iterations: 1000}
	cases := []struct {
		name   string
		o      FormatOptions
		csArgs []string // the same options for cryptsetup luksFormat, when it can run here
	}{
		{"default-cipher", FormatOptions{PBKDF: forced}, []string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--sector-size", "4096"}},
		{"sector-512-xts-256", FormatOptions{PBKDF: forced, SectorSize: 512, KeySize: 32}, []string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--sector-size", "512", "--key-size", "256"}},
		{"argon2id", FormatOptions{PBKDF: PBKDF{Type: "argon2id", Iterations: 4, MemoryKiB: 1024, Parallel: 2}}, []string{"--pbkdf", "argon2id", "--pbkdf-force-iterations", "4", "--pbkdf-memory", "1024", "--pbkdf-parallel", "2", "--sector-size", "4096"}},
		{"argon2i", FormatOptions{PBKDF: PBKDF{Type: "argon2i", Iterations: 4, MemoryKiB: 1024, Parallel: 1}}, nil},
		{"hmac-sha256", FormatOptions{PBKDF: forced, Integrity: "hmac-sha256"}, nil},
		{"hmac-sha512-512", FormatOptions{PBKDF: forced, Integrity: "hmac-sha512", SectorSize: 512}, nil},
		{"aead", FormatOptions{PBKDF: forced, Integrity: "aead", Cipher: "aes-gcm-random"}, nil},
		{"label-uuid", FormatOptions{PBKDF: forced, Label: "state", Subsystem: "confidisk", UUID: "0c9b7a65-1f4e-4d2b-9a51-3e1d2c7b8a90"}, []string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--sector-size", "4096", "--label", "state", "--subsystem", "confidisk", "--uuid", "0c9b7a65-1f4e-4d2b-9a51-3e1d2c7b8a90"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path, f := newImage(t)
			h, vk, err := Format(f, imageSize, []byte("pass one"), tc.o)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := h.AddKeyslot(f, vk, []byte("pass two"), -1, KDF{Type: "pbkdf2", Hash: "sha256", Iterations: 1000}); err != nil {
				t.Fatal(err)
			}
			if _, err := h.AddToken([]byte(`{"type":"confidisk-test","keyslots":["1"]}`), -1); err != nil {
				t.Fatal(err)
			}
			if err := h.Write(f); err != nil {
				t.Fatal(err)
			}
			if out, err := cryptsetup(t, "", "luksDump", path); err != nil {
				t.Fatalf("luksDump of our header: %v\n%s", err, out)
			}
			for _, pass := range []string{"pass one", "pass two"} {
				if out, err := cryptsetup(t, pass, "open", "--test-passphrase", "--key-file", "-", path); err != nil {
					t.Errorf("cryptsetup open --test-passphrase %q: %v\n%s", pass, err, out)
				}
			}
			if _, err := cryptsetup(t, "nope", "open", "--test-passphrase", "--key-file", "-", path); err == nil {
				t.Error("cryptsetup accepted a wrong passphrase")
			}
			csJSON, err := cryptsetup(t, "", "luksDump", "--dump-json-metadata", path)
			if err != nil {
				t.Fatal(err)
			}
			ours, _ := h.DumpJSON()
			if diff := cmp.Diff(csJSON, string(ours)); diff != "" {
				t.Errorf("cryptsetup reads our JSON differently (-cryptsetup +ours):\n%s", diff)
			}
			if tc.csArgs == nil {
				return
			}
			// The same options through cryptsetup give the same JSON, salts aside.
			theirPath, _ := newImage(t)
			args := append([]string{"luksFormat", "--type", "luks2", "--batch-mode", "--key-file", "-"}, tc.csArgs...)
			if out, err := cryptsetup(t, "pass one", append(args, theirPath)...); err != nil {
				t.Fatalf("luksFormat: %v\n%s", err, out)
			}
			theirs, err := cryptsetup(t, "", "luksDump", "--dump-json-metadata", theirPath)
			if err != nil {
				t.Fatal(err)
			}
			// Drop what we added after format (keyslot 1, the token) from ours.
			h2, _, _ := Read(f)
			delete(h2.Metadata.Keyslots, 1)
			delete(h2.Metadata.Tokens, 0)
			h2.Metadata.Digests[0].Keyslots = []string{"0"}
			mineJSON, _ := h2.DumpJSON()
			norm := func(s string) string { return saltLike.ReplaceAllString(s, `"$1":"…"`) }
			if diff := cmp.Diff(norm(theirs), norm(string(mineJSON))); diff != "" {
				t.Errorf("JSON after format (-cryptsetup +ours):\n%s", diff)
			}
		})
	}
}

func TestRepairFromSecondary(t *testing.T) {
	path, f := newImage(t)
	h, _, err := Format(f, imageSize, []byte("pw"), FormatOptions{PBKDF: PBKDF{Type: "pbkdf2", Iterations: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	seq := h.SeqID
	// Damage the primary JSON area: its checksum no longer matches.
	if _, err := f.WriteAt([]byte("garbage"), 4096+10); err != nil {
		t.Fatal(err)
	}
	h2, rep, err := Read(f)
	if err != nil {
		t.Fatalf("read with a damaged primary: %v", err)
	}
	if !errors.Is(rep.PrimaryErr, ErrChecksum) || rep.SecondaryErr != nil || !rep.NeedsRepair() {
		t.Errorf("report %+v, want a primary checksum error", rep)
	}
	if h2.SeqID != seq {
		t.Errorf("seqid %d, want %d", h2.SeqID, seq)
	}
	if err := h2.Write(f); err != nil {
		t.Fatal(err)
	}
	_, rep, err = Read(f)
	if err != nil || rep.NeedsRepair() {
		t.Fatalf("after repair: %v %+v", err, rep)
	}
	if out, err := cryptsetup(t, "pw", "open", "--test-passphrase", "--key-file", "-", path); err != nil {
		t.Fatalf("cryptsetup after repair: %v\n%s", err, out)
	}
	// Both copies damaged: a clear error.
	f.WriteAt([]byte("garbage"), 4096+10)
	f.WriteAt([]byte("garbage"), DefaultHdrSize+4096+10)
	if _, _, err := Read(f); err == nil || !strings.Contains(err.Error(), "both LUKS2 header copies are damaged") {
		t.Errorf("both damaged: %v", err)
	}
	// Not LUKS at all.
	_, g := newImage(t)
	if _, _, err := Read(g); !errors.Is(err, ErrNotLUKS2) {
		t.Errorf("zeroed device: %v, want ErrNotLUKS2", err)
	}
}

func TestKillKeyslotAndTokens(t *testing.T) {
	path, f := newImage(t)
	h, vk, err := Format(f, imageSize, []byte("a"), FormatOptions{PBKDF: PBKDF{Type: "pbkdf2", Iterations: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.AddKeyslot(f, vk, []byte("b"), 5, KDF{Type: "pbkdf2", Hash: "sha256", Iterations: 1000}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.AddToken([]byte(`{"type":"x","keyslots":["0","5"],"v":1}`), 3); err != nil {
		t.Fatal(err)
	}
	if _, err := h.AddToken([]byte(`{"type":"x","keyslots":["9"]}`), -1); err == nil {
		t.Error("token referring to a missing keyslot accepted")
	}
	if err := h.KillKeyslot(f, 0, false); err != nil {
		t.Fatal(err)
	}
	if err := h.KillKeyslot(f, 5, false); err == nil {
		t.Error("removing the last keyslot without force succeeded")
	}
	if err := h.Write(f); err != nil {
		t.Fatal(err)
	}
	if _, err := cryptsetup(t, "a", "open", "--test-passphrase", "--key-file", "-", path); err == nil {
		t.Error("killed keyslot still opens")
	}
	if out, err := cryptsetup(t, "b", "open", "--test-passphrase", "--key-file", "-", path); err != nil {
		t.Errorf("keyslot 5: %v\n%s", err, out)
	}
	out, err := cryptsetup(t, "", "token", "export", "--token-id", "3", path)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"type":"x","keyslots":["5"],"v":1}`; strings.TrimSpace(out) != want {
		t.Errorf("token after kill: %s, want %s", out, want)
	}
	if err := h.RemoveToken(3); err != nil {
		t.Fatal(err)
	}
	if err := h.RemoveToken(3); err == nil {
		t.Error("removing a missing token succeeded")
	}
}

func TestChangeKey(t *testing.T) {
	path, f := newImage(t)
	h, _, err := Format(f, imageSize, []byte("old"), FormatOptions{PBKDF: PBKDF{Type: "pbkdf2", Iterations: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	slot, err := h.ChangeKey(f, []byte("old"), []byte("new"), KDF{Type: "pbkdf2", Hash: "sha256", Iterations: 1000}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if slot != 1 || len(h.Metadata.Keyslots) != 1 {
		t.Errorf("new slot %d, %d keyslots; want slot 1 alone", slot, len(h.Metadata.Keyslots))
	}
	if _, err := cryptsetup(t, "old", "open", "--test-passphrase", "--key-file", "-", path); err == nil {
		t.Error("old passphrase still opens")
	}
	if out, err := cryptsetup(t, "new", "open", "--test-passphrase", "--key-file", "-", path); err != nil {
		t.Errorf("new passphrase: %v\n%s", err, out)
	}
	if _, err := h.ChangeKey(f, []byte("wrong"), []byte("x"), KDF{Type: "pbkdf2", Hash: "sha256", Iterations: 1000}, nil); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("change with a wrong passphrase: %v", err)
	}
}
