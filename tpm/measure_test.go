package tpm

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/tpm/tpmtest"
)

const (
	vecUUID = "11111111-2222-3333-4444-555555555555"
)

var vecVK = []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")

// The vector of formats-and-peers.md §1d.
func TestVolumeKeyVector(t *testing.T) {
	if got, want := FixateValue(vecVK, "root", vecUUID), "31b2a9a3fb6b41741664a49a02515514eca9d4f773d9c59bd7546dc5a873ec66"; got != want {
		t.Errorf("FixateValue = %s, want %s", got, want)
	}
	d1, err := VolumeKeyDigest(SHA1, vecVK, "root", vecUUID)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := hex.EncodeToString(d1), "3809c45c926270cd9e4fa2d05fcb0fe4cbc47875"; got != want {
		t.Errorf("sha1 digest = %s, want %s", got, want)
	}
	d256, _ := VolumeKeyDigest(SHA256, vecVK, "root", vecUUID)
	pcr, _ := ExtendValue(SHA256, make([]byte, 32), d256)
	if got, want := hex.EncodeToString(pcr), "c7a3e8c216ff767d6d738549358cb85103a0f81706c82a85c423878b24ceec92"; got != want {
		t.Errorf("pcr 15 = %s, want %s", got, want)
	}
}

func TestVolumeKeyMessage(t *testing.T) {
	tests := []struct{ name, want string }{
		{"root", "cryptsetup:root:" + vecUUID},
		{"a:b", `cryptsetup:a\x3ab:` + vecUUID},
		{`back\slash`, `cryptsetup:back\x5cslash:` + vecUUID},
		{"tab\t", `cryptsetup:tab\x09:` + vecUUID},
		{"", "cryptsetup:luks-" + vecUUID + ":" + vecUUID},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, VolumeKeyMessage(tc.name, vecUUID)); diff != "" {
			t.Errorf("VolumeKeyMessage(%q) (-want +got):\n%s", tc.name, diff)
		}
	}
}

// TestMeasureVolumeKeySWTPM computes the expected PCR 15 independently
// (crypto/hmac and the extend rule) and compares with TPM2_PCR_Read, and
// checks the log replays to the same value.
func TestMeasureVolumeKeySWTPM(t *testing.T) {
	sw := tpmtest.Start(t)
	tp := sw.Open()
	logPath := filepath.Join(t.TempDir(), "run", "tpm2-measure.log")
	for _, name := range []string{"root", "swap:1"} {
		if _, err := MeasureVolumeKey(tp, vecVK, name, vecUUID, MeasureOptions{LogPath: logPath, BootID: "0123456789abcdef0123456789abcdef", Timestamp: 42}); err != nil {
			t.Fatal(err)
		}
	}
	want256, want1 := make([]byte, 32), make([]byte, 20)
	for _, msg := range []string{"cryptsetup:root:" + vecUUID, `cryptsetup:swap\x3a1:` + vecUUID} {
		m := hmac.New(sha256.New, vecVK)
		m.Write([]byte(msg))
		h := sha256.New()
		h.Write(want256)
		h.Write(m.Sum(nil))
		want256 = h.Sum(nil)
		m1 := hmac.New(sha1.New, vecVK)
		m1.Write([]byte(msg))
		h1 := sha1.New()
		h1.Write(want1)
		h1.Write(m1.Sum(nil))
		want1 = h1.Sum(nil)
	}
	for bank, want := range map[Bank][]byte{SHA256: want256, SHA1: want1} {
		got, err := ReadPCRs(tp, bank, []int{15})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[15], want) {
			t.Errorf("pcr 15 %s = %x, want %x", bank, got[15], want)
		}
	}
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(logPath)
	if fi.Mode() != 0o600 {
		t.Errorf("log mode %v, want 0600", fi.Mode())
	}
	recs, err := ParseMeasureLog(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].Content.EventType != "volume-key" || recs[0].Content.String != "cryptsetup:root:"+vecUUID {
		t.Fatalf("log records = %+v", recs)
	}
	replay, err := ReplayPCR(recs, 15, SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(replay, want256) {
		t.Errorf("log replays to %x, want %x", replay, want256)
	}
}

func TestParseMeasureLogErrors(t *testing.T) {
	good := "\x1e{\"pcr\":15,\"digests\":[{\"hashAlg\":\"sha256\",\"digest\":\"" + hex.EncodeToString(make([]byte, 32)) + "\"}],\"content_type\":\"systemd\",\"content\":{\"string\":\"x\"}}\n"
	if _, err := ParseMeasureLog([]byte(good + good)); err != nil {
		t.Fatalf("good log: %v", err)
	}
	tests := map[string]string{
		"no separator":  good[1:],
		"truncated":     good[:len(good)-5],
		"bad pcr":       "\x1e{\"pcr\":99,\"digests\":[{\"hashAlg\":\"sha256\",\"digest\":\"00\"}],\"content_type\":\"systemd\",\"content\":{}}\n",
		"short digest":  "\x1e{\"pcr\":15,\"digests\":[{\"hashAlg\":\"sha256\",\"digest\":\"00\"}],\"content_type\":\"systemd\",\"content\":{}}\n",
		"unknown bank":  "\x1e{\"pcr\":15,\"digests\":[{\"hashAlg\":\"md5\",\"digest\":\"00\"}],\"content_type\":\"systemd\",\"content\":{}}\n",
		"no digests":    "\x1e{\"pcr\":15,\"digests\":[],\"content_type\":\"systemd\",\"content\":{}}\n",
		"unknown field": "\x1e{\"pcr\":15,\"bogus\":1}\n",
		"two objects":   "\x1e{}{}\n",
	}
	for name, in := range tests {
		if _, err := ParseMeasureLog([]byte(in)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
