package secureboot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf16"

	"github.com/foxboron/go-uefi/pkcs7"
	"golang.org/x/crypto/cryptobyte"
)

// Variable attributes (UEFI spec 8.2, GetVariable).
const (
	AttrNonVolatile                       uint32 = 0x00000001
	AttrBootServiceAccess                 uint32 = 0x00000002
	AttrRuntimeAccess                     uint32 = 0x00000004
	AttrTimeBasedAuthenticatedWriteAccess uint32 = 0x00000020
	AttrAppendWrite                       uint32 = 0x00000040

	// SecureBootVarAttributes is NV|BS|RT|TIME_BASED_AUTHENTICATED_WRITE_ACCESS,
	// the attributes of PK, KEK, db and dbx.
	SecureBootVarAttributes = AttrNonVolatile | AttrBootServiceAccess | AttrRuntimeAccess | AttrTimeBasedAuthenticatedWriteAccess
)

// WIN_CERTIFICATE fields (UEFI spec 32.2.4).
const (
	winCertRevision = 0x0200
	winCertTypeGUID = 0x0EF1 // WIN_CERT_TYPE_EFI_GUID
	// winCertHeaderSize is WIN_CERTIFICATE (dwLength, wRevision,
	// wCertificateType) plus the CertType GUID of WIN_CERTIFICATE_UEFI_GUID.
	winCertHeaderSize = 4 + 2 + 2 + guidSize
	efiTimeSize       = 16
)

// utf16Name returns name as UTF-16LE without a terminating NUL, as the
// signed data of an authenticated variable and UEFI_VARIABLE_DATA hold it.
func utf16Name(name string) []byte {
	u := utf16.Encode([]rune(name))
	b := make([]byte, 0, 2*len(u))
	for _, c := range u {
		b = binary.LittleEndian.AppendUint16(b, c)
	}
	return b
}

// appendEFITime appends t (in UTC, whole seconds) as an EFI_TIME (UEFI spec
// 8.3). For time-based authenticated variables Pad1, Nanosecond, TimeZone,
// Daylight and Pad2 must be zero (8.2.2).
func appendEFITime(b []byte, t time.Time) []byte {
	t = t.UTC()
	b = binary.LittleEndian.AppendUint16(b, uint16(t.Year()))
	b = append(b, byte(t.Month()), byte(t.Day()), byte(t.Hour()), byte(t.Minute()), byte(t.Second()), 0)
	b = binary.LittleEndian.AppendUint32(b, 0) // Nanosecond
	b = binary.LittleEndian.AppendUint16(b, 0) // TimeZone
	return append(b, 0, 0)                     // Daylight, Pad2
}

// parseEFITime decodes an EFI_TIME with the zero fields 8.2.2 requires.
func parseEFITime(b []byte) (time.Time, error) {
	year := int(binary.LittleEndian.Uint16(b))
	mon, day, hour, minute, sec := int(b[2]), int(b[3]), int(b[4]), int(b[5]), int(b[6])
	if b[7] != 0 || binary.LittleEndian.Uint32(b[8:]) != 0 || binary.LittleEndian.Uint16(b[12:]) != 0 || b[14] != 0 || b[15] != 0 {
		return time.Time{}, errors.New("EFI_TIME: Pad1, Nanosecond, TimeZone, Daylight and Pad2 must be zero")
	}
	if year < 1900 || year > 9999 || mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, fmt.Errorf("EFI_TIME %04d-%02d-%02d %02d:%02d:%02d is out of range", year, mon, day, hour, minute, sec)
	}
	t := time.Date(year, time.Month(mon), day, hour, minute, sec, 0, time.UTC)
	if t.Day() != day {
		return time.Time{}, fmt.Errorf("EFI_TIME %04d-%02d-%02d is not a date", year, mon, day)
	}
	return t, nil
}

// checkAuthTime refuses a timestamp EFI_TIME cannot hold.
func checkAuthTime(t time.Time) error {
	if y := t.UTC().Year(); y < 1900 || y > 9999 {
		return fmt.Errorf("timestamp year %d outside EFI_TIME's 1900-9999", y)
	}
	return nil
}

// VariableSignedData returns the bytes an EFI_VARIABLE_AUTHENTICATION_2
// signature covers (UEFI spec 8.2.2, SetVariable, time-based authenticated
// write access, step 2): VariableName (UTF-16LE, no NUL) || VendorGuid ||
// Attributes (UINT32) || TimeStamp (EFI_TIME) || Data.
func VariableSignedData(name string, vendor GUID, attrs uint32, timestamp time.Time, data []byte) []byte {
	b := utf16Name(name)
	b = appendGUID(b, vendor)
	b = binary.LittleEndian.AppendUint32(b, attrs)
	b = appendEFITime(b, timestamp)
	return append(b, data...)
}

// SignVariable returns an EFI_VARIABLE_AUTHENTICATION_2 descriptor (UEFI
// spec 8.2.2) followed by data: the payload of a time-based authenticated
// SetVariable, the ".auth" file efi-updatevar and sbvarsign write.
//
// The descriptor is TimeStamp (EFI_TIME of timestamp in UTC, whole seconds)
// and a WIN_CERTIFICATE_UEFI_GUID (wCertificateType WIN_CERT_TYPE_EFI_GUID,
// CertType EFI_CERT_TYPE_PKCS7_GUID) whose CertData is a DER PKCS#7
// SignedData (no ContentInfo wrapper, as 8.2.2 requires) detached over
// [VariableSignedData], signed by s with SHA-256 and no authenticated
// attributes, so the output depends only on the inputs and the key.
//
// To enroll PK sign with PK itself, KEK with PK, db and dbx with KEK.
func SignVariable(s *Signer, name string, vendor GUID, attrs uint32, timestamp time.Time, data []byte) ([]byte, error) {
	if _, err := s.rsaKey(); err != nil {
		return nil, fmt.Errorf("sign variable %s: %w", name, err)
	}
	if err := checkAuthTime(timestamp); err != nil {
		return nil, fmt.Errorf("sign variable %s: %w", name, err)
	}
	signed := VariableSignedData(name, vendor, attrs, timestamp, data)
	der, err := pkcs7.SignPKCS7(s.key, s.cert, pkcs7.OIDData, signed, pkcs7.NoAttr())
	if err != nil {
		return nil, fmt.Errorf("sign variable %s: %w", name, err)
	}
	sd, err := unwrapContentInfo(der)
	if err != nil {
		return nil, fmt.Errorf("sign variable %s: %w", name, err)
	}
	b := appendEFITime(nil, timestamp)
	b = binary.LittleEndian.AppendUint32(b, uint32(winCertHeaderSize+len(sd)))
	b = binary.LittleEndian.AppendUint16(b, winCertRevision)
	b = binary.LittleEndian.AppendUint16(b, winCertTypeGUID)
	b = appendGUID(b, CertTypePKCS7GUID)
	b = append(b, sd...)
	return append(b, data...), nil
}

// unwrapContentInfo returns the SignedData SEQUENCE inside a PKCS#7
// ContentInfo.
func unwrapContentInfo(der []byte) ([]byte, error) {
	s := cryptobyte.String(der)
	oid, content, err := pkcs7.ParseContentInfo(&s)
	if err != nil {
		return nil, fmt.Errorf("pkcs7 content info: %w", err)
	}
	if !oid.Equal(pkcs7.OIDSignedData) {
		return nil, fmt.Errorf("pkcs7 content type %v is not signedData", oid)
	}
	return content, nil
}

// AuthVariable is a parsed EFI_VARIABLE_AUTHENTICATION_2 payload.
type AuthVariable struct {
	// Timestamp is the descriptor's TimeStamp.
	Timestamp time.Time
	// SignedData is the DER PKCS#7 SignedData of the WIN_CERTIFICATE_UEFI_GUID.
	SignedData []byte
	// Data is the variable content after the descriptor.
	Data []byte
}

// ParseAuthVariable parses b as an EFI_VARIABLE_AUTHENTICATION_2 descriptor
// followed by the variable data, checking the WIN_CERTIFICATE header
// (revision 0x0200, type WIN_CERT_TYPE_EFI_GUID, CertType
// EFI_CERT_TYPE_PKCS7_GUID) and that dwLength fits. It does not verify the
// signature; [VariableSignedData] gives the bytes it must cover.
func ParseAuthVariable(b []byte) (*AuthVariable, error) {
	if len(b) < efiTimeSize+winCertHeaderSize {
		return nil, fmt.Errorf("auth variable: %d bytes, descriptor needs at least %d", len(b), efiTimeSize+winCertHeaderSize)
	}
	ts, err := parseEFITime(b)
	if err != nil {
		return nil, fmt.Errorf("auth variable: %w", err)
	}
	w := b[efiTimeSize:]
	length := uint64(binary.LittleEndian.Uint32(w))
	switch {
	case binary.LittleEndian.Uint16(w[4:]) != winCertRevision:
		return nil, fmt.Errorf("auth variable: WIN_CERTIFICATE revision %#04x, want %#04x", binary.LittleEndian.Uint16(w[4:]), winCertRevision)
	case binary.LittleEndian.Uint16(w[6:]) != winCertTypeGUID:
		return nil, fmt.Errorf("auth variable: WIN_CERTIFICATE type %#04x, want WIN_CERT_TYPE_EFI_GUID %#04x", binary.LittleEndian.Uint16(w[6:]), winCertTypeGUID)
	case readGUID(w[8:]) != CertTypePKCS7GUID:
		return nil, fmt.Errorf("auth variable: CertType %s, want EFI_CERT_TYPE_PKCS7_GUID", readGUID(w[8:]))
	case length < winCertHeaderSize || length > uint64(len(w)):
		return nil, fmt.Errorf("auth variable: WIN_CERTIFICATE dwLength %d outside %d..%d", length, winCertHeaderSize, len(w))
	}
	return &AuthVariable{
		Timestamp:  ts,
		SignedData: append([]byte(nil), w[winCertHeaderSize:length]...),
		Data:       append([]byte(nil), w[length:]...),
	}, nil
}
