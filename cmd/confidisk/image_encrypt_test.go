//go:build !confidisk_guest

package main

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/confidisk/confidisk/broker/brokertest"
	"github.com/confidisk/confidisk/enroll"
	"github.com/confidisk/confidisk/integrity"
	"github.com/confidisk/confidisk/internal/testutil"
	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/provision"
	"github.com/confidisk/confidisk/recovery"
	"github.com/confidisk/confidisk/tpm"
	"github.com/confidisk/confidisk/tpm/tpmtest"
)

// encryptFixture is what the image encrypt tests share: an operator
// recovery key pair, an ext4 state file system and a directory for outputs.
type encryptFixture struct {
	dir, opKey, opPub, fs string
}

func newEncryptFixture(t *testing.T) *encryptFixture {
	t.Helper()
	dir := t.TempDir()
	op, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	privPEM, pubPEM, err := recovery.MarshalKeys(op)
	if err != nil {
		t.Fatal(err)
	}
	f := &encryptFixture{dir: dir, opKey: filepath.Join(dir, "op.key"), opPub: filepath.Join(dir, "op.pub"), fs: filepath.Join(dir, "fs.img")}
	os.WriteFile(f.opKey, privPEM, 0o600)
	os.WriteFile(f.opPub, pubPEM, 0o600)
	tree := t.TempDir()
	os.MkdirAll(filepath.Join(tree, "overlay", "upper"), 0o755)
	os.WriteFile(filepath.Join(tree, "overlay", "upper", "hello"), []byte("hello\n"), 0o644)
	mkfs := testutil.LookPath(t, "mkfs.ext4", "e2fsprogs")
	if out, err := exec.Command(mkfs, "-q", "-F", "-b", "4096", "-d", tree, f.fs, "4M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	return f
}

// readVolume reads the header of an image encrypt output and its
// provisioning token.
func readVolume(t *testing.T, path string) (*os.File, *luks2.Header, map[string]any) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	h, _, err := luks2.Read(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, raw := range h.Metadata.Tokens {
		var m map[string]any
		if json.Unmarshal(raw, &m) == nil && m["type"] == provision.TokenType {
			return f, h, m
		}
	}
	t.Fatalf("%s: no %s token", path, provision.TokenType)
	return nil, nil, nil
}

// TestImageEncryptSRK: a volume sealed offline to one swtpm's SRK opens
// with that swtpm (the key the recovery passphrase opens too), carries a
// pre-encrypted provisioning token at step filesystem and a dm-integrity
// superblock; on another swtpm the token is refused as another vTPM's.
func TestImageEncryptSRK(t *testing.T) {
	fx := newEncryptFixture(t)
	sw := tpmtest.Start(t)
	tc := sw.Open()
	defer tc.Close()
	srk, _, err := tpm.GetOrCreateSRK(tc)
	if err != nil {
		t.Fatal(err)
	}
	srkFile := filepath.Join(fx.dir, "srk")
	os.WriteFile(srkFile, tpm.MarshalSRKPublic(&srk.Public), 0o600)
	pcrs, err := tpm.ReadPCRs(tc, tpm.SHA256, []int{7})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(fx.dir, "state.img")
	stdout, stderr, err := runIn(t, "", "image", "encrypt", out, "--size", "24M", "--data", fx.fs, "--recovery-key", fx.opPub,
		"--tpm2-device-key", srkFile, "--tpm2-pcrs", "7:sha256="+hex.EncodeToString(pcrs[7]), "--json")
	if err != nil {
		t.Fatalf("image encrypt: %v\n%s", err, stderr)
	}
	var res encryptResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || !res.SRKSealed || !res.Filesystem || res.Broker {
		t.Fatalf("result %s (%v)", stdout, err)
	}
	f, h, pt := readVolume(t, out)
	if pt["origin"] != provision.OriginPreEncrypted || pt["step"] != string(provision.StepFilesystem) || h.UUID != res.UUID {
		t.Errorf("provisioning token %v of volume %s, want origin pre-encrypted at step filesystem of %s", pt, h.UUID, res.UUID)
	}
	if _, err := integrity.ReadSuperblock(f, int64(h.Metadata.Segments[0].Offset)); err != nil {
		t.Errorf("no dm-integrity superblock: %v", err)
	}
	vk, _, err := enroll.UnlockWithToken(tc, f, h, -1, tpm.UnsealOptions{})
	if err != nil {
		t.Fatalf("the swtpm sealed to does not open the volume: %v", err)
	}
	if id := tpm.FixateValue(vk, provision.StateName, h.UUID); id != res.KeyID {
		t.Errorf("key id %s, reported %s", id, res.KeyID)
	}
	pass, _, err := runIn(t, "", "luks", "recover", out, "--operator-key", fx.opKey)
	if err != nil {
		t.Fatalf("luks recover: %v", err)
	}
	if rk, _, err := h.Unlock(f, []byte(strings.TrimSpace(pass)), 0); err != nil || hex.EncodeToString(rk) != hex.EncodeToString(vk) {
		t.Errorf("the recovery passphrase opens keyslot 0 to another key (%v)", err)
	}
	other := tpmtest.Start(t).Open()
	defer other.Close()
	if _, _, err := enroll.UnlockWithToken(other, f, h, -1, tpm.UnsealOptions{}); err == nil {
		t.Error("another swtpm opened the volume")
	}
}

// TestImageEncryptBroker: --broker-put registers the volume and stores its
// key with the requirements before anything appears under the output's
// name; a broker that cannot be reached leaves no output at all.
func TestImageEncryptBroker(t *testing.T) {
	fx := newEncryptFixture(t)
	data := t.TempDir()
	l, err := brokertest.StartLocal(data, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	out := filepath.Join(fx.dir, "state.img")
	pcr7 := strings.Repeat("3f", 32)
	stdout, stderr, err := runIn(t, "", "image", "encrypt", out, "--size", "24M", "--recovery-key", fx.opPub,
		"--broker-put", "--broker-url", l.URL, "--broker-data", data, "--require-pcr", "7="+pcr7, "--json")
	if err != nil {
		t.Fatalf("image encrypt: %v\n%s", err, stderr)
	}
	var res encryptResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || !res.Broker || res.Filesystem {
		t.Fatalf("result %s (%v)", stdout, err)
	}
	ctx := context.Background()
	v, err := l.Store.Volume(ctx, res.UUID)
	if err != nil || v.KeyID != res.KeyID {
		t.Fatalf("registered %+v (%v), want key id %s", v, err, res.KeyID)
	}
	wk, err := l.Store.Key(ctx, res.UUID)
	if err != nil || wk.KeyID != res.KeyID || string(wk.Require) != `{"pcrs":{"7":"`+pcr7+`"}}` {
		t.Fatalf("stored key %+v (%v)", wk, err)
	}
	if _, _, pt := readVolume(t, out); pt["step"] != string(provision.StepInitialised) {
		t.Errorf("a volume without data is at step %v, want %s", pt["step"], provision.StepInitialised)
	}

	gone := filepath.Join(fx.dir, "gone.img")
	if _, _, err := runIn(t, "", "image", "encrypt", gone, "--size", "24M", "--recovery-key", fx.opPub,
		"--broker-put", "--broker-url", "https://127.0.0.1:1", "--broker-data", data); err == nil {
		t.Fatal("image encrypt with an unreachable broker succeeded")
	}
	assertNoOutput(t, fx.dir, gone)
}

// assertNoOutput checks that neither path nor a temporary file for it is
// left in dir.
func assertNoOutput(t *testing.T, dir, path string) {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		t.Errorf("%s exists after a failure", path)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), filepath.Base(path)) {
			t.Errorf("%s left behind", e.Name())
		}
	}
}

// TestImageEncryptRefuses: bad input is refused with what is wrong, and
// nothing is written.
func TestImageEncryptRefuses(t *testing.T) {
	fx := newEncryptFixture(t)
	notFS := filepath.Join(fx.dir, "zeros")
	os.WriteFile(notFS, make([]byte, 8192), 0o600)
	srkFile := filepath.Join(fx.dir, "srk")
	os.WriteFile(srkFile, []byte("not an SRK"), 0o600)
	out := filepath.Join(fx.dir, "state.img")
	base := []string{"image", "encrypt", out, "--size", "24M"}
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no keyslot 0", []string{"--broker-put"}, "--key-file"},
		{"nothing releases the key", []string{"--recovery-key", fx.opPub}, "--broker-put or --tpm2-device-key"},
		{"requirements without the broker", []string{"--recovery-key", fx.opPub, "--tpm2-device-key", srkFile, "--tpm2-pcrs", "7:sha256=" + strings.Repeat("00", 32), "--require-pcr", "7=00"}, "need --broker-put"},
		{"data not ext4", []string{"--recovery-key", fx.opPub, "--broker-put", "--data", notFS}, "not an ext4"},
		{"data larger than the volume", []string{"--recovery-key", fx.opPub, "--broker-put", "--data", fx.fs, "--size", "17M"}, "larger than the volume"},
		{"srk without pcrs", []string{"--recovery-key", fx.opPub, "--tpm2-device-key", srkFile}, "go together"},
		{"bad srk", []string{"--recovery-key", fx.opPub, "--tpm2-device-key", srkFile, "--tpm2-pcrs", "7:sha256=" + strings.Repeat("00", 32)}, "--tpm2-device-key"},
		{"copy without data", []string{"--recovery-key", fx.opPub, "--broker-put", "--broker-url", "https://127.0.0.1:1", "--rw", "copy"}, "copy needs the data"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := runIn(t, "", append(append([]string{}, base...), tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
			assertNoOutput(t, fx.dir, out)
		})
	}
}
