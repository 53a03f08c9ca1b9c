package eventlog

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/go-tpm/tpm2"
)

// --- builders for synthetic logs (PFP sections 10.2.1, 10.2.2, 10.4.5) ---

func le16(b []byte, v uint16) []byte { return binary.LittleEndian.AppendUint16(b, v) }
func le32(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) }

// legacyRecord is a TCG_PCClientPCREvent.
func legacyRecord(pcr, typ uint32, digest [20]byte, data []byte) []byte {
	b := le32(nil, pcr)
	b = le32(b, typ)
	b = append(b, digest[:]...)
	b = le32(b, uint32(len(data)))
	return append(b, data...)
}

// agileRecord is a TCG_PCR_EVENT2.
func agileRecord(pcr, typ uint32, ds []Digest, data []byte) []byte {
	b := le32(nil, pcr)
	b = le32(b, typ)
	b = le32(b, uint32(len(ds)))
	for _, d := range ds {
		b = le16(b, uint16(d.Alg))
		b = append(b, d.Digest...)
	}
	b = le32(b, uint32(len(data)))
	return append(b, data...)
}

// specIDData is a TCG_EfiSpecIdEvent declaring algs.
func specIDData(algs []Algorithm, vendor []byte) []byte {
	b := []byte(specIDSignature)
	b = le32(b, 0)            // platformClass
	b = append(b, 0, 2, 0, 2) // specVersionMinor, specVersionMajor, specErrata, uintnSize
	b = le32(b, uint32(len(algs)))
	for _, a := range algs {
		b = le16(b, uint16(a.ID))
		b = le16(b, uint16(a.DigestSize))
	}
	b = append(b, byte(len(vendor)))
	return append(b, vendor...)
}

// specIDRecord wraps a Spec ID event body into the first (legacy) record.
func specIDRecord(body []byte) []byte {
	return legacyRecord(0, EvNoAction, [20]byte{}, body)
}

var sha1sha256 = []Algorithm{{tpm2.TPMAlgSHA1, 20}, {tpm2.TPMAlgSHA256, 32}}

// measured returns the sha1 and sha256 digests of data, as firmware logs them.
func measured(data []byte) []Digest {
	s1, s256 := sha1.Sum(data), sha256.Sum256(data)
	return []Digest{{tpm2.TPMAlgSHA1, s1[:]}, {tpm2.TPMAlgSHA256, s256[:]}}
}

func concat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// ext1 and ext256 are PCR extends computed without the package's code.
func ext1(old, d []byte) []byte {
	s := sha1.Sum(concat(old, d))
	return s[:]
}

func ext256(old, d []byte) []byte {
	s := sha256.Sum256(concat(old, d))
	return s[:]
}

func zeros(n int) []byte { return make([]byte, n) }

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	sepData    = []byte{0, 0, 0, 0}
	crtmData   = []byte("synthetic s-crtm 1.0")
	sbData     = []byte("SecureBoot=1")
	appData    = []byte("\\EFI\\BOOT\\BOOTX64.EFI")
	noActData  = []byte("SP800-155 Event3 whatever")
	bogusNoAct = []Digest{{tpm2.TPMAlgSHA1, bytes.Repeat([]byte{0xee}, 20)}, {tpm2.TPMAlgSHA256, bytes.Repeat([]byte{0xee}, 32)}}
)

// agileLog is a crypto-agile sha1+sha256 log with an EV_NO_ACTION event
// whose (bogus) digests must not be extended.
func agileLog() []byte {
	return concat(
		specIDRecord(specIDData(sha1sha256, []byte("vendor"))),
		agileRecord(0, EvSCRTMVersion, measured(crtmData), crtmData),
		agileRecord(7, EvEFIVariableDriverConfig, measured(sbData), sbData),
		agileRecord(0, EvNoAction, bogusNoAct, noActData),
		agileRecord(0, EvSeparator, measured(sepData), sepData),
		agileRecord(7, EvSeparator, measured(sepData), sepData),
		agileRecord(4, EvEFIBootServicesApplication, measured(appData), appData),
	)
}

// legacyLog is a SHA-1 log of TCG_PCClientPCREvent records.
func legacyLog() []byte {
	return concat(
		legacyRecord(0, EvSCRTMVersion, sha1.Sum(crtmData), crtmData),
		legacyRecord(0, EvNoAction, [20]byte{1, 2, 3}, noActData),
		legacyRecord(0, EvSeparator, sha1.Sum(sepData), sepData),
		legacyRecord(5, EvAction, sha1.Sum([]byte("Calling INT 19h")), []byte("Calling INT 19h")),
		legacyRecord(5, EvSeparator, sha1.Sum(sepData), sepData),
	)
}

func localityData(loc byte) []byte { return append([]byte(localitySignature), loc) }

// localityLog is a crypto-agile log whose firmware started the TPM in
// locality 3 (PFP section 10.4.5.3).
func localityLog() []byte {
	return concat(
		specIDRecord(specIDData(sha1sha256, nil)),
		agileRecord(0, EvNoAction, []Digest{{tpm2.TPMAlgSHA1, zeros(20)}, {tpm2.TPMAlgSHA256, zeros(32)}}, localityData(3)),
		agileRecord(0, EvSCRTMVersion, measured(crtmData), crtmData),
		agileRecord(0, EvSeparator, measured(sepData), sepData),
		agileRecord(1, EvSeparator, measured(sepData), sepData),
	)
}

var equateEmpty = cmpopts.EquateEmpty()

// --- the real log ---

func readRealLog(t testing.TB) (*Log, map[int][]byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "seabios-q35.bin"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	j, err := os.ReadFile(filepath.Join("testdata", "seabios-q35.pcrs.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Bank string            `json:"bank"`
		PCRs map[string]string `json:"pcrs"`
	}
	if err := json.Unmarshal(j, &f); err != nil {
		t.Fatal(err)
	}
	if f.Bank != "sha256" {
		t.Fatalf("pcrs file bank %q, want sha256", f.Bank)
	}
	pcrs := make(map[int][]byte)
	for k, v := range f.PCRs {
		i, err := strconv.Atoi(k)
		if err != nil {
			t.Fatal(err)
		}
		pcrs[i] = mustHex(t, v)
	}
	return l, pcrs
}

func TestRealLog(t *testing.T) {
	l, quoted := readRealLog(t)

	if diff := cmp.Diff(&SpecID{SpecVersionMajor: 2, SpecErrata: 2, UintnSize: 2}, l.SpecID, equateEmpty); diff != "" {
		t.Errorf("SpecID (-want +got):\n%s", diff)
	}
	wantAlgs := []Algorithm{{tpm2.TPMAlgSHA1, 20}, {tpm2.TPMAlgSHA256, 32}, {tpm2.TPMAlgSHA384, 48}, {tpm2.TPMAlgSHA512, 64}}
	if diff := cmp.Diff(wantAlgs, l.Algorithms); diff != "" {
		t.Errorf("Algorithms (-want +got):\n%s", diff)
	}
	if l.HasStartupLocality {
		t.Errorf("HasStartupLocality = true, want false")
	}

	type summary struct {
		PCR  int
		Type string
	}
	var got []summary
	for i, e := range l.Events {
		if e.Index != i {
			t.Errorf("Events[%d].Index = %d", i, e.Index)
		}
		got = append(got, summary{e.PCR, EventTypeName(e.Type)})
	}
	want := []summary{
		{0, "EV_NO_ACTION"}, // Spec ID Event03
		{1, "EV_EVENT_TAG"},
		{2, "EV_ACTION"},
		{2, "EV_EVENT_TAG"},
		{2, "EV_EVENT_TAG"},
		{4, "EV_ACTION"},
		{0, "EV_SEPARATOR"}, {1, "EV_SEPARATOR"}, {2, "EV_SEPARATOR"}, {3, "EV_SEPARATOR"},
		{4, "EV_SEPARATOR"}, {5, "EV_SEPARATOR"}, {6, "EV_SEPARATOR"}, {7, "EV_SEPARATOR"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if got, want := string(l.Events[5].Data), "Calling INT 19h"; got != want {
		t.Errorf("event 5 data %q, want %q", got, want)
	}

	replayed, err := l.Replay(tpm2.TPMAlgSHA256)
	if err != nil {
		t.Fatalf("Replay(sha256): %v", err)
	}
	// The log extends PCRs 0-7; the guest's PCRs 8 and 9 are untouched.
	wantReplay := make(map[int][]byte)
	for i := 0; i <= 7; i++ {
		wantReplay[i] = quoted[i]
	}
	if diff := cmp.Diff(wantReplay, replayed); diff != "" {
		t.Errorf("Replay(sha256) (-quoted +replayed):\n%s", diff)
	}
	for _, i := range []int{8, 9} {
		if !bytes.Equal(quoted[i], zeros(32)) {
			t.Errorf("quoted pcr %d = %x, want zeros", i, quoted[i])
		}
	}

	if err := l.Verify(tpm2.TPMAlgSHA256, quoted); err != nil {
		t.Errorf("Verify(sha256, quoted): %v", err)
	}
	for _, a := range l.Algorithms {
		if _, err := l.Replay(a.ID); err != nil {
			t.Errorf("Replay(%s): %v", algName(a.ID), err)
		}
	}
}

func TestRealLogVerifyRefusesOneBit(t *testing.T) {
	l, quoted := readRealLog(t)
	for pcr := 0; pcr <= 7; pcr++ {
		t.Run(fmt.Sprint("pcr", pcr), func(t *testing.T) {
			changed := make(map[int][]byte)
			for i, v := range quoted {
				changed[i] = bytes.Clone(v)
			}
			changed[pcr][31] ^= 1
			err := l.Verify(tpm2.TPMAlgSHA256, changed)
			if !errors.Is(err, ErrMismatch) {
				t.Fatalf("Verify = %v, want ErrMismatch", err)
			}
			msg := err.Error()
			for _, s := range []string{
				fmt.Sprintf("sha256 pcr %d ", pcr),
				fmt.Sprintf("replays to %x", quoted[pcr]),
				fmt.Sprintf("quoted %x", changed[pcr]),
			} {
				if !strings.Contains(msg, s) {
					t.Errorf("error %q lacks %q", msg, s)
				}
			}
		})
	}
}

// --- synthetic logs ---

func TestParseSynthetic(t *testing.T) {
	s1 := func(d []byte) []Digest { s := sha1.Sum(d); return []Digest{{tpm2.TPMAlgSHA1, s[:]}} }
	tests := []struct {
		name string
		in   []byte
		want *Log
	}{{
		name: "crypto-agile sha1+sha256",
		in:   agileLog(),
		want: &Log{
			SpecID:     &SpecID{SpecVersionMajor: 2, UintnSize: 2, VendorInfo: []byte("vendor")},
			Algorithms: sha1sha256,
			Events: []Event{
				{0, 0, EvNoAction, []Digest{{tpm2.TPMAlgSHA1, zeros(20)}}, specIDData(sha1sha256, []byte("vendor"))},
				{1, 0, EvSCRTMVersion, measured(crtmData), crtmData},
				{2, 7, EvEFIVariableDriverConfig, measured(sbData), sbData},
				{3, 0, EvNoAction, bogusNoAct, noActData},
				{4, 0, EvSeparator, measured(sepData), sepData},
				{5, 7, EvSeparator, measured(sepData), sepData},
				{6, 4, EvEFIBootServicesApplication, measured(appData), appData},
			},
		},
	}, {
		name: "legacy sha1",
		in:   legacyLog(),
		want: &Log{
			Algorithms: []Algorithm{{tpm2.TPMAlgSHA1, 20}},
			Events: []Event{
				{0, 0, EvSCRTMVersion, s1(crtmData), crtmData},
				{1, 0, EvNoAction, []Digest{{tpm2.TPMAlgSHA1, append([]byte{1, 2, 3}, zeros(17)...)}}, noActData},
				{2, 0, EvSeparator, s1(sepData), sepData},
				{3, 5, EvAction, s1([]byte("Calling INT 19h")), []byte("Calling INT 19h")},
				{4, 5, EvSeparator, s1(sepData), sepData},
			},
		},
	}, {
		name: "startup locality 3",
		in:   localityLog(),
		want: &Log{
			SpecID:     &SpecID{SpecVersionMajor: 2, UintnSize: 2},
			Algorithms: sha1sha256,
			Events: []Event{
				{0, 0, EvNoAction, []Digest{{tpm2.TPMAlgSHA1, zeros(20)}}, specIDData(sha1sha256, nil)},
				{1, 0, EvNoAction, []Digest{{tpm2.TPMAlgSHA1, zeros(20)}, {tpm2.TPMAlgSHA256, zeros(32)}}, localityData(3)},
				{2, 0, EvSCRTMVersion, measured(crtmData), crtmData},
				{3, 0, EvSeparator, measured(sepData), sepData},
				{4, 1, EvSeparator, measured(sepData), sepData},
			},
			HasStartupLocality: true,
			StartupLocality:    3,
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := bytes.Clone(tt.in)
			got, err := Parse(in)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			// The Log must not alias the input.
			for i := range in {
				in[i] = 0x5a
			}
			if diff := cmp.Diff(tt.want, got, equateEmpty); diff != "" {
				t.Errorf("Parse (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReplaySynthetic(t *testing.T) {
	h1 := func(d []byte) []byte { s := sha1.Sum(d); return s[:] }
	h256 := func(d []byte) []byte { s := sha256.Sum256(d); return s[:] }
	loc3 := func(n int) []byte { v := zeros(n); v[n-1] = 3; return v }

	tests := []struct {
		name string
		in   []byte
		alg  tpm2.TPMAlgID
		want map[int][]byte
	}{{
		name: "agile sha1",
		in:   agileLog(),
		alg:  tpm2.TPMAlgSHA1,
		want: map[int][]byte{
			0: ext1(ext1(zeros(20), h1(crtmData)), h1(sepData)),
			4: ext1(zeros(20), h1(appData)),
			7: ext1(ext1(zeros(20), h1(sbData)), h1(sepData)),
		},
	}, {
		name: "agile sha256",
		in:   agileLog(),
		alg:  tpm2.TPMAlgSHA256,
		want: map[int][]byte{
			0: ext256(ext256(zeros(32), h256(crtmData)), h256(sepData)),
			4: ext256(zeros(32), h256(appData)),
			7: ext256(ext256(zeros(32), h256(sbData)), h256(sepData)),
		},
	}, {
		name: "legacy sha1",
		in:   legacyLog(),
		alg:  tpm2.TPMAlgSHA1,
		want: map[int][]byte{
			0: ext1(ext1(zeros(20), h1(crtmData)), h1(sepData)),
			5: ext1(ext1(zeros(20), h1([]byte("Calling INT 19h"))), h1(sepData)),
		},
	}, {
		name: "startup locality 3 sha256",
		in:   localityLog(),
		alg:  tpm2.TPMAlgSHA256,
		want: map[int][]byte{
			0: ext256(ext256(loc3(32), h256(crtmData)), h256(sepData)),
			1: ext256(zeros(32), h256(sepData)),
		},
	}, {
		name: "startup locality 3 sha1",
		in:   localityLog(),
		alg:  tpm2.TPMAlgSHA1,
		want: map[int][]byte{
			0: ext1(ext1(loc3(20), h1(crtmData)), h1(sepData)),
			1: ext1(zeros(20), h1(sepData)),
		},
	}, {
		name: "startup locality without pcr 0 events",
		in: concat(
			specIDRecord(specIDData(sha1sha256, nil)),
			agileRecord(0, EvNoAction, []Digest{{tpm2.TPMAlgSHA1, zeros(20)}, {tpm2.TPMAlgSHA256, zeros(32)}}, localityData(3)),
			agileRecord(2, EvSeparator, measured(sepData), sepData),
		),
		alg: tpm2.TPMAlgSHA256,
		want: map[int][]byte{
			0: loc3(32),
			2: ext256(zeros(32), h256(sepData)),
		},
	}, {
		name: "spec id event only",
		in:   specIDRecord(specIDData(sha1sha256, nil)),
		alg:  tpm2.TPMAlgSHA256,
		want: map[int][]byte{},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got, err := l.Replay(tt.alg)
			if err != nil {
				t.Fatalf("Replay: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, equateEmpty); diff != "" {
				t.Errorf("Replay (-want +got):\n%s", diff)
			}
			if err := l.Verify(tt.alg, tt.want); err != nil {
				t.Errorf("Verify(expected values): %v", err)
			}
		})
	}
}

func TestReplayErrors(t *testing.T) {
	legacy, err := Parse(legacyLog())
	if err != nil {
		t.Fatal(err)
	}
	sm3Log := concat(
		specIDRecord(specIDData([]Algorithm{{tpm2.TPMAlgSM3256, 32}, {0x7777, 7}}, nil)),
		agileRecord(0, EvSeparator, []Digest{{tpm2.TPMAlgSM3256, zeros(32)}, {0x7777, zeros(7)}}, sepData),
	)
	sm3, err := Parse(sm3Log)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		l    *Log
		alg  tpm2.TPMAlgID
		want error
	}{
		{"legacy log asked for sha256", legacy, tpm2.TPMAlgSHA256, ErrAlgorithm},
		{"sm3_256 is not computable", sm3, tpm2.TPMAlgSM3256, ErrAlgorithm},
		{"unknown algorithm is not computable", sm3, 0x7777, ErrAlgorithm},
		{"algorithm not in log", sm3, tpm2.TPMAlgSHA1, ErrAlgorithm},
		{"hand-built event without the digest", &Log{
			Algorithms: sha1sha256,
			Events:     []Event{{Index: 0, PCR: 1, Type: EvSeparator, Digests: measured(sepData)[:1]}},
		}, tpm2.TPMAlgSHA256, ErrMalformed},
		{"hand-built event on pcr 24", &Log{
			Algorithms: sha1sha256,
			Events:     []Event{{Index: 0, PCR: 24, Type: EvSeparator, Digests: measured(sepData)}},
		}, tpm2.TPMAlgSHA256, ErrMalformed},
		{"hand-built wrong digest size", &Log{
			Algorithms: []Algorithm{{tpm2.TPMAlgSHA256, 20}},
		}, tpm2.TPMAlgSHA256, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.l.Replay(tt.alg)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Replay = %v, want %v", err, tt.want)
			}
			if err2 := tt.l.Verify(tt.alg, nil); !errors.Is(err2, tt.want) {
				t.Errorf("Verify = %v, want %v", err2, tt.want)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	l, err := Parse(agileLog())
	if err != nil {
		t.Fatal(err)
	}
	good, err := l.Replay(tpm2.TPMAlgSHA256)
	if err != nil {
		t.Fatal(err)
	}
	with := func(changes map[int][]byte) map[int][]byte {
		m := make(map[int][]byte)
		for i, v := range good {
			m[i] = v
		}
		for i, v := range changes {
			if v == nil {
				delete(m, i)
			} else {
				m[i] = v
			}
		}
		return m
	}
	bad := bytes.Repeat([]byte{0xab}, 32)
	tests := []struct {
		name    string
		pcrs    map[int][]byte
		wantErr string // substring; "" means success
	}{
		{"exact", with(nil), ""},
		{"untouched pcrs ignored", with(map[int][]byte{8: bad, 15: bad, 23: zeros(32)}), ""},
		{"missing pcrs ignored", with(map[int][]byte{0: nil, 7: nil}), ""},
		{"no pcrs in common", map[int][]byte{10: bad}, ""},
		{"pcr 7 differs", with(map[int][]byte{7: bad}), fmt.Sprintf("sha256 pcr 7 replays to %x, quoted %x: ", good[7], bad)},
		{"several differ", with(map[int][]byte{7: bad, 4: bad, 0: zeros(32)}), "sha256 pcr 0 replays to "},
		{"several differ listed", with(map[int][]byte{7: bad, 4: bad, 0: zeros(32)}), "(pcrs 0, 4, 7 differ)"},
		{"short quoted value", with(map[int][]byte{4: good[4][:31]}), "sha256 pcr 4 "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := l.Verify(tpm2.TPMAlgSHA256, tt.pcrs)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrMismatch) {
				t.Fatalf("Verify = %v, want ErrMismatch", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Verify = %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// --- malformed input ---

func corruptedLogs() map[string][]byte {
	good := agileLog()
	specRec := specIDRecord(specIDData(sha1sha256, nil))
	sep := agileRecord(0, EvSeparator, measured(sepData), sepData)
	withSpec := func(rest ...[]byte) []byte {
		return concat(append([][]byte{specRec}, rest...)...)
	}
	cut := func(b []byte, n int) []byte { return b[:len(b)-n] }
	setU32 := func(b []byte, off int, v uint32) []byte {
		b = bytes.Clone(b)
		binary.LittleEndian.PutUint32(b[off:], v)
		return b
	}
	manyAlgs := make([]Algorithm, MaxAlgorithms+1)
	for i := range manyAlgs {
		manyAlgs[i] = Algorithm{tpm2.TPMAlgID(0x8000 + i), 32}
	}
	specBody := specIDData(sha1sha256, nil)
	noAct := []Digest{{tpm2.TPMAlgSHA1, zeros(20)}, {tpm2.TPMAlgSHA256, zeros(32)}}

	return map[string][]byte{
		"empty":                            nil,
		"three bytes":                      {1, 2, 3},
		"truncated spec id event record":   cut(specRec, 10),
		"truncated spec id event body":     specIDRecord(specBody[:len(specBody)-6]),
		"spec id event shorter than fixed": specIDRecord([]byte(specIDSignature + "\x00\x00")),
		"spec id event trailing bytes":     specIDRecord(append(bytes.Clone(specBody), 0)),
		"spec id event on pcr 1":           concat(legacyRecord(1, EvNoAction, [20]byte{}, specBody), sep),
		"vendor info beyond event":         specIDRecord(append(cut(specBody, 1), 5, 'a')),
		"zero algorithms":                  specIDRecord(specIDData(nil, nil)),
		"too many algorithms":              specIDRecord(specIDData(manyAlgs, nil)),
		"huge algorithm count":             specIDRecord(setU32(specBody, 24, 0xffffffff)),
		"sha256 digest size 20":            specIDRecord(specIDData([]Algorithm{{tpm2.TPMAlgSHA1, 20}, {tpm2.TPMAlgSHA256, 20}}, nil)),
		"sha1 digest size 32":              specIDRecord(specIDData([]Algorithm{{tpm2.TPMAlgSHA1, 32}}, nil)),
		"unknown algorithm size 65":        specIDRecord(specIDData([]Algorithm{{0x7777, 65}}, nil)),
		"unknown algorithm size 0":         specIDRecord(specIDData([]Algorithm{{0x7777, 0}}, nil)),
		"algorithm declared twice":         specIDRecord(specIDData([]Algorithm{{tpm2.TPMAlgSHA256, 32}, {tpm2.TPMAlgSHA256, 32}}, nil)),
		"truncated event header":           withSpec(sep[:7]),
		"truncated digest":                 withSpec(sep[:20]),
		"truncated event size":             withSpec(sep[:len(sep)-len(sepData)-2]),
		"event size beyond the end":        cut(good, 1),
		"event size 0xffffffff":            withSpec(setU32(sep, len(sep)-len(sepData)-4, 0xffffffff)),
		"digest count 1 of 2":              withSpec(agileRecord(0, EvSeparator, measured(sepData)[1:], sepData)),
		"digest count 3 of 2":              withSpec(agileRecord(0, EvSeparator, append(measured(sepData), measured(sepData)[0]), sepData)),
		"digest count 0xffffffff":          withSpec(setU32(sep, 8, 0xffffffff)),
		"unknown algorithm in event":       withSpec(agileRecord(0, EvSeparator, []Digest{{tpm2.TPMAlgSHA1, zeros(20)}, {tpm2.TPMAlgSM3256, zeros(32)}}, sepData)),
		"same algorithm twice in event":    withSpec(agileRecord(0, EvSeparator, []Digest{{tpm2.TPMAlgSHA1, zeros(20)}, {tpm2.TPMAlgSHA1, zeros(20)}}, sepData)),
		"pcr 24":                           withSpec(agileRecord(24, EvSeparator, measured(sepData), sepData)),
		"pcr 0xffffffff":                   withSpec(agileRecord(0xffffffff, EvSeparator, measured(sepData), sepData)),
		"legacy pcr 24":                    legacyRecord(24, EvSeparator, sha1.Sum(sepData), sepData),
		"legacy truncated header":          concat(legacyRecord(0, EvSeparator, sha1.Sum(sepData), sepData), make([]byte, 31)),
		"legacy event size beyond the end": cut(legacyLog(), 1),
		"startup locality on pcr 1":        withSpec(agileRecord(1, EvNoAction, noAct, localityData(3))),
		"startup locality too long":        withSpec(agileRecord(0, EvNoAction, noAct, append(localityData(3), 0))),
		"startup locality too short":       withSpec(agileRecord(0, EvNoAction, noAct, []byte(localitySignature))),
		"second startup locality":          withSpec(agileRecord(0, EvNoAction, noAct, localityData(3)), agileRecord(0, EvNoAction, noAct, localityData(0))),
		"startup locality after pcr 0":     withSpec(sep, agileRecord(0, EvNoAction, noAct, localityData(3))),
	}
}

func TestParseMalformed(t *testing.T) {
	for name, in := range corruptedLogs() {
		t.Run(name, func(t *testing.T) {
			l, err := Parse(in)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse = %v, %v; want ErrMalformed", l, err)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") || msg != strings.ToLower(msg[:1])+msg[1:] || !strings.HasPrefix(msg, "event log: ") {
				t.Errorf("error %q is not one lowercase line prefixed with \"event log: \"", msg)
			}
			if len(in) > 0 && !strings.Contains(msg, "at offset ") {
				t.Errorf("error %q does not say where", msg)
			}
		})
	}
}

func TestParseErrorLocation(t *testing.T) {
	good := agileLog()
	_, err := Parse(good[:len(good)-1])
	// The last record (event 6) starts where the first six end.
	l, perr := Parse(agileLog())
	if perr != nil {
		t.Fatal(perr)
	}
	off := len(specIDRecord(specIDData(sha1sha256, []byte("vendor"))))
	for _, e := range l.Events[1:6] {
		off += len(agileRecord(uint32(e.PCR), e.Type, e.Digests, e.Data))
	}
	want := fmt.Sprintf("event log: event 6 at offset %d: event size %d exceeds the %d bytes left: malformed event log", off, len(appData), len(appData)-1)
	if err == nil || err.Error() != want {
		t.Errorf("Parse error = %v, want %q", err, want)
	}
}

// TestMaxEvents builds a 32 MiB log (about 1.4 s).
func TestMaxEvents(t *testing.T) {
	rec := legacyRecord(1, EvPostCode, [20]byte{}, nil)
	in := bytes.Repeat(rec, MaxEvents)
	l, err := Parse(in)
	if err != nil {
		t.Fatalf("Parse(%d events): %v", MaxEvents, err)
	}
	if len(l.Events) != MaxEvents {
		t.Fatalf("%d events, want %d", len(l.Events), MaxEvents)
	}
	in = append(in, rec...)
	if _, err := Parse(in); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("Parse(%d events) = %v, want ErrMalformed", MaxEvents+1, err)
	}
}

func TestEventTypeName(t *testing.T) {
	tests := []struct {
		t    uint32
		want string
	}{
		{0, "EV_PREBOOT_CERT"},
		{1, "EV_POST_CODE"},
		{3, "EV_NO_ACTION"},
		{4, "EV_SEPARATOR"},
		{0x0d, "EV_IPL"},
		{0x12, "EV_OMIT_BOOT_DEVICE_EVENTS"},
		{0x80000001, "EV_EFI_VARIABLE_DRIVER_CONFIG"},
		{0x80000003, "EV_EFI_BOOT_SERVICES_APPLICATION"},
		{0x8000000b, "EV_EFI_HANDOFF_TABLES2"},
		{0x80000010, "EV_EFI_HCRTM_EVENT"},
		{0x800000e0, "EV_EFI_VARIABLE_AUTHORITY"},
		{0x13, "0x00000013"},
		{0x800000ff, "0x800000ff"},
	}
	for _, tt := range tests {
		if got := EventTypeName(tt.t); got != tt.want {
			t.Errorf("EventTypeName(%#x) = %q, want %q", tt.t, got, tt.want)
		}
	}
}

// TestFuzzCorpus checks that testdata/fuzz/FuzzParse holds the real log
// and the synthetic ones of these tests; EVENTLOG_WRITE_CORPUS=1 rewrites
// it.
func TestFuzzCorpus(t *testing.T) {
	realLog, err := os.ReadFile(filepath.Join("testdata", "seabios-q35.bin"))
	if err != nil {
		t.Fatal(err)
	}
	write := os.Getenv("EVENTLOG_WRITE_CORPUS") == "1"
	dir := filepath.Join("testdata", "fuzz", "FuzzParse")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"seabios-q35":      realLog,
		"agile-sha1-256":   agileLog(),
		"legacy-sha1":      legacyLog(),
		"startup-locality": localityLog(),
	} {
		want := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		path := filepath.Join(dir, name)
		if write {
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if got, err := os.ReadFile(path); err != nil || string(got) != want {
			t.Errorf("seed %s is missing or out of date (%v): run EVENTLOG_WRITE_CORPUS=1 go test -run TestFuzzCorpus ./tpm/eventlog", path, err)
		}
	}
}
