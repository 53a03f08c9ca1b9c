package secureboot

import (
	"crypto/sha256"
	"encoding/binary"
)

// TCG event types of PCR 7 (TCG PC Client Platform Firmware Profile,
// section 10.4.1).
const (
	EventSeparator               uint32 = 0x00000004
	EventEFIVariableDriverConfig uint32 = 0x80000001
	EventEFIVariableAuthority    uint32 = 0x800000E0
)

// Event is one measurement into PCR 7: its type, the variable it names
// (empty for the separator), the event data as the TCG event log records it
// and the SHA-256 digest extended into the PCR.
type Event struct {
	Type   uint32
	Name   string
	Vendor GUID
	Data   []byte
	Digest [32]byte
}

// SecureBootVars is the Secure Boot state firmware measures into PCR 7: the
// exact contents of the variables (the concatenated EFI_SIGNATURE_LISTs, no
// EFI_VARIABLE_AUTHENTICATION_2 header) and the db entry that verified the
// booted image. A nil slice is an absent (or empty) variable, which EDK2
// measures with VariableDataLength 0.
type SecureBootVars struct {
	// SecureBoot is the SecureBoot variable: true measures the byte 0x01.
	SecureBoot bool
	PK         []byte
	KEK        []byte
	DB         []byte
	// DBX is the forbidden database as the firmware holds it: firmware
	// images without a real dbx often carry a dummy list, so callers pass
	// the bytes of that list rather than a description of it.
	DBX []byte
	// DBT, when not nil, is measured after dbx as EDK2 does for a present
	// dbt.
	DBT []byte
	// Authority is the EFI_SIGNATURE_DATA (owner GUID followed by the DER
	// certificate, [SignatureData.Bytes]) of the db entry that verified the
	// image; nil records no EV_EFI_VARIABLE_AUTHORITY event.
	Authority []byte
}

// VariableData returns the UEFI_VARIABLE_DATA structure of an
// EV_EFI_VARIABLE_* event (TCG PC Client Platform Firmware Profile,
// section 10.4.4 / UEFI_VARIABLE_DATA): VariableName (the vendor GUID, in
// EFI_GUID layout) || UnicodeNameLength (UINT64, in CHAR16s) ||
// VariableDataLength (UINT64, in bytes) || UnicodeName (UTF-16LE without a
// NUL) || VariableData.
func VariableData(name string, vendor GUID, data []byte) []byte {
	uname := utf16Name(name)
	b := appendGUID(make([]byte, 0, guidSize+16+len(uname)+len(data)), vendor)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(uname)/2))
	b = binary.LittleEndian.AppendUint64(b, uint64(len(data)))
	b = append(b, uname...)
	return append(b, data...)
}

// PredictPCR7 returns the SHA-256 PCR 7 value an OVMF (EDK2) guest with
// Secure Boot enabled reaches when it boots one image verified by db, and the
// events extended in order (TCG PC Client Platform Firmware Profile section
// 3.3.4.8, "PCR[7] - Secure Boot Policy Measurements", and 10.4.4):
//
//  1. EV_EFI_VARIABLE_DRIVER_CONFIG for SecureBoot, PK, KEK, db and dbx (and
//     dbt when given), each digest the SHA-256 of its UEFI_VARIABLE_DATA
//     ([VariableData]); SecureBoot, PK and KEK under EFI_GLOBAL_VARIABLE,
//     the databases under EFI_IMAGE_SECURITY_DATABASE_GUID;
//  2. EV_SEPARATOR, digest SHA-256 of four zero bytes, at ReadyToBoot;
//  3. EV_EFI_VARIABLE_AUTHORITY for the db entry that verified the image:
//     UEFI_VARIABLE_DATA of name "db", vendor
//     EFI_IMAGE_SECURITY_DATABASE_GUID, data the EFI_SIGNATURE_DATA.
//
// The PCR starts at 32 zero bytes and each event extends it:
// PCR = SHA-256(PCR || digest).
//
// The lab checks the prediction against the PCR 7 and the event log of an
// OVMF guest booting a signed UKI and a signed addon with Secure Boot on
// (e2e TestLabImage, scenario image-boot): the same five variable events,
// the separator and one authority event, although the firmware verified
// two images against the same db entry (EDK2 measures an authority once).
// Firmware that loads further db-verified images before the OS loader (an
// option ROM, a second authority) extends more authority events.
func PredictPCR7(sb SecureBootVars) ([32]byte, []Event) {
	secureBoot := []byte{0}
	if sb.SecureBoot {
		secureBoot[0] = 1
	}
	vars := []struct {
		name   string
		vendor GUID
		data   []byte
	}{
		{"SecureBoot", EFIGlobalVariableGUID, secureBoot},
		{VarPK, EFIGlobalVariableGUID, sb.PK},
		{VarKEK, EFIGlobalVariableGUID, sb.KEK},
		{VarDB, ImageSecurityDatabaseGUID, sb.DB},
		{VarDBX, ImageSecurityDatabaseGUID, sb.DBX},
	}
	if sb.DBT != nil {
		vars = append(vars, struct {
			name   string
			vendor GUID
			data   []byte
		}{"dbt", ImageSecurityDatabaseGUID, sb.DBT})
	}
	var events []Event
	for _, v := range vars {
		d := VariableData(v.name, v.vendor, v.data)
		events = append(events, Event{Type: EventEFIVariableDriverConfig, Name: v.name, Vendor: v.vendor, Data: d, Digest: sha256.Sum256(d)})
	}
	sep := []byte{0, 0, 0, 0}
	events = append(events, Event{Type: EventSeparator, Data: sep, Digest: sha256.Sum256(sep)})
	if sb.Authority != nil {
		d := VariableData(VarDB, ImageSecurityDatabaseGUID, sb.Authority)
		events = append(events, Event{Type: EventEFIVariableAuthority, Name: VarDB, Vendor: ImageSecurityDatabaseGUID, Data: d, Digest: sha256.Sum256(d)})
	}
	return ReplayPCR(events), events
}

// ReplayPCR returns the SHA-256 PCR value after extending a zero PCR with
// the digests of events in order.
func ReplayPCR(events []Event) [32]byte {
	var pcr [32]byte
	for _, e := range events {
		h := sha256.New()
		h.Write(pcr[:])
		h.Write(e.Digest[:])
		copy(pcr[:], h.Sum(nil))
	}
	return pcr
}

// SecureBootVars returns the SecureBootVars of a guest enrolled with ks
// (PK, KEK and db holding ks's ESLs), booting an image signed by ks.DB, with
// dbx holding the given bytes.
func (ks *KeySet) SecureBootVars(dbx []byte) (SecureBootVars, error) {
	var sb SecureBootVars
	var err error
	if sb.PK, err = ks.ESL(VarPK); err != nil {
		return sb, err
	}
	if sb.KEK, err = ks.ESL(VarKEK); err != nil {
		return sb, err
	}
	if sb.DB, err = ks.ESL(VarDB); err != nil {
		return sb, err
	}
	sb.SecureBoot = true
	sb.DBX = dbx
	sb.Authority = SignatureData{Owner: ks.Owner, Data: ks.DB.cert.Raw}.Bytes()
	return sb, nil
}
