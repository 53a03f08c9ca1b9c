package secureboot

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"testing"
	"unicode/utf16"

	"github.com/google/go-cmp/cmp"
)

// refVariableData builds UEFI_VARIABLE_DATA a second way: the TCG struct
// written field by field with encoding/binary.
func refVariableData(t *testing.T, name string, vendor GUID, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	g := vendor
	hdr := struct {
		Data1      uint32
		Data2      uint16
		Data3      uint16
		Data4      [8]byte
		NameLength uint64
		DataLength uint64
	}{
		binary.BigEndian.Uint32(g[0:4]), binary.BigEndian.Uint16(g[4:6]), binary.BigEndian.Uint16(g[6:8]), [8]byte(g[8:16]),
		uint64(len(utf16.Encode([]rune(name)))), uint64(len(data)),
	}
	if err := binary.Write(&buf, binary.LittleEndian, hdr); err != nil {
		t.Fatal(err)
	}
	if err := binary.Write(&buf, binary.LittleEndian, utf16.Encode([]rune(name))); err != nil {
		t.Fatal(err)
	}
	buf.Write(data)
	return buf.Bytes()
}

func TestVariableDataKnownAnswer(t *testing.T) {
	// SecureBoot = 1 under EFI_GLOBAL_VARIABLE, as it appears in a TCG event
	// log (e.g. tpm2_eventlog of an OVMF boot).
	want := "61dfe48bca93d211aa0d00e098032b8c" + "0a00000000000000" + "0100000000000000" +
		"53006500630075007200650042006f006f007400" + "01"
	if diff := cmp.Diff(want, hex.EncodeToString(VariableData("SecureBoot", EFIGlobalVariableGUID, []byte{1}))); diff != "" {
		t.Errorf("UEFI_VARIABLE_DATA (-want +got):\n%s", diff)
	}
}

func TestPredictPCR7(t *testing.T) {
	ks := testKeys(t)
	dbx := X509SignatureList(GUID{1}, []byte("dummy dbx entry"))
	sb, err := ks.SecureBootVars(dbx)
	if err != nil {
		t.Fatal(err)
	}
	pcr, events := PredictPCR7(sb)

	type ev struct {
		Type   uint32
		Name   string
		Data   string
		Digest string
	}
	mk := func(typ uint32, name string, vendor GUID, data []byte) ev {
		d := refVariableData(t, name, vendor, data)
		sum := sha256.Sum256(d)
		return ev{typ, name, hex.EncodeToString(d), hex.EncodeToString(sum[:])}
	}
	authority := append(appendGUID(nil, testOwner), ks.DB.Certificate().Raw...)
	want := []ev{
		mk(EventEFIVariableDriverConfig, "SecureBoot", EFIGlobalVariableGUID, []byte{1}),
		mk(EventEFIVariableDriverConfig, "PK", EFIGlobalVariableGUID, X509SignatureList(testOwner, ks.PK.Certificate().Raw)),
		mk(EventEFIVariableDriverConfig, "KEK", EFIGlobalVariableGUID, X509SignatureList(testOwner, ks.KEK.Certificate().Raw)),
		mk(EventEFIVariableDriverConfig, "db", ImageSecurityDatabaseGUID, X509SignatureList(testOwner, ks.DB.Certificate().Raw)),
		mk(EventEFIVariableDriverConfig, "dbx", ImageSecurityDatabaseGUID, dbx),
		{EventSeparator, "", "00000000", "df3f619804a92fdb4057192dc43dd748ea778adc52bc498ce80524c014b81119"},
		mk(EventEFIVariableAuthority, "db", ImageSecurityDatabaseGUID, authority),
	}
	var got []ev
	for _, e := range events {
		got = append(got, ev{e.Type, e.Name, hex.EncodeToString(e.Data), hex.EncodeToString(e.Digest[:])})
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}

	// Replay by hand: PCR_new = SHA-256(PCR_old || digest), from zero.
	var ref [32]byte
	for _, w := range want {
		d, _ := hex.DecodeString(w.Digest)
		ref = sha256.Sum256(append(ref[:], d...))
	}
	if pcr != ref {
		t.Errorf("PCR 7 = %x, replay gives %x", pcr, ref)
	}
}

func TestPredictPCR7Variants(t *testing.T) {
	base := SecureBootVars{SecureBoot: true, PK: []byte{1}, KEK: []byte{2}, DB: []byte{3}, DBX: []byte{4}, Authority: []byte{5}}
	basePCR, _ := PredictPCR7(base)
	for _, tc := range []struct {
		name   string
		mutate func(*SecureBootVars)
		events int
	}{
		{"secure boot off", func(s *SecureBootVars) { s.SecureBoot = false }, 7},
		{"other dbx", func(s *SecureBootVars) { s.DBX = []byte{4, 4} }, 7},
		{"no dbx", func(s *SecureBootVars) { s.DBX = nil }, 7},
		{"dbt present", func(s *SecureBootVars) { s.DBT = []byte{} }, 8},
		{"no authority", func(s *SecureBootVars) { s.Authority = nil }, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb := base
			tc.mutate(&sb)
			pcr, events := PredictPCR7(sb)
			if pcr == basePCR {
				t.Error("PCR 7 did not change")
			}
			if len(events) != tc.events {
				t.Errorf("%d events, want %d", len(events), tc.events)
			}
			if ReplayPCR(events) != pcr {
				t.Error("ReplayPCR disagrees with PredictPCR7")
			}
		})
	}
}
