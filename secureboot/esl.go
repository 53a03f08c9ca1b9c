package secureboot

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/confidisk/confidisk/gpt"
)

// GUID is a GUID in the byte order of its canonical text form (the
// project's [gpt.GUID]). The UEFI structures here store it in the
// mixed-endian EFI_GUID layout (UEFI spec appendix A); this package converts.
type GUID = gpt.GUID

// ParseGUID parses the canonical text form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx.
func ParseGUID(s string) (GUID, error) { return gpt.ParseGUID(s) }

// Well-known GUIDs (UEFI spec 3.3 globally defined variables, 32.4.1
// signature database, 32.2.4 WIN_CERTIFICATE_UEFI_GUID, 32.6.1 image
// security database).
var (
	// EFIGlobalVariableGUID (8be4df61-93ca-11d2-aa0d-00e098032b8c) is the
	// vendor GUID of PK, KEK and SecureBoot.
	EFIGlobalVariableGUID = GUID{0x8b, 0xe4, 0xdf, 0x61, 0x93, 0xca, 0x11, 0xd2, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c}
	// ImageSecurityDatabaseGUID (d719b2cb-3d3a-4596-a3bc-dad00e67656f) is
	// the vendor GUID of db, dbx, dbt and dbr.
	ImageSecurityDatabaseGUID = GUID{0xd7, 0x19, 0xb2, 0xcb, 0x3d, 0x3a, 0x45, 0x96, 0xa3, 0xbc, 0xda, 0xd0, 0x0e, 0x67, 0x65, 0x6f}
	// CertX509GUID (a5c059a1-94e4-4aa7-87b5-ab155c2bf072) is EFI_CERT_X509_GUID:
	// each signature is a DER X.509 certificate.
	CertX509GUID = GUID{0xa5, 0xc0, 0x59, 0xa1, 0x94, 0xe4, 0x4a, 0xa7, 0x87, 0xb5, 0xab, 0x15, 0x5c, 0x2b, 0xf0, 0x72}
	// CertSHA256GUID (c1c41626-504c-4092-aca9-41f936934328) is
	// EFI_CERT_SHA256_GUID: each signature is a SHA-256 image digest.
	CertSHA256GUID = GUID{0xc1, 0xc4, 0x16, 0x26, 0x50, 0x4c, 0x40, 0x92, 0xac, 0xa9, 0x41, 0xf9, 0x36, 0x93, 0x43, 0x28}
	// CertTypePKCS7GUID (4aafd29d-68df-49ee-8aa9-347d375665a7) is
	// EFI_CERT_TYPE_PKCS7_GUID, the only certificate type of
	// EFI_VARIABLE_AUTHENTICATION_2.
	CertTypePKCS7GUID = GUID{0x4a, 0xaf, 0xd2, 0x9d, 0x68, 0xdf, 0x49, 0xee, 0x8a, 0xa9, 0x34, 0x7d, 0x37, 0x56, 0x65, 0xa7}
)

// guidSize is the size of an EFI_GUID.
const guidSize = 16

// appendGUID appends g in the EFI_GUID layout: the first three fields (4, 2
// and 2 bytes) little-endian, the last 8 bytes in order.
func appendGUID(b []byte, g GUID) []byte {
	return append(b,
		g[3], g[2], g[1], g[0],
		g[5], g[4],
		g[7], g[6],
		g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15])
}

// readGUID decodes the EFI_GUID layout in b[:16].
func readGUID(b []byte) GUID {
	return GUID{
		b[3], b[2], b[1], b[0],
		b[5], b[4],
		b[7], b[6],
		b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15],
	}
}

// SignatureData is one EFI_SIGNATURE_DATA (UEFI spec 32.4.1): the owner's
// GUID and the signature (for [CertX509GUID], a DER certificate).
type SignatureData struct {
	Owner GUID
	Data  []byte
}

// Bytes returns the EFI_SIGNATURE_DATA encoding: SignatureOwner (EFI_GUID)
// followed by SignatureData. This is also the data of the
// EV_EFI_VARIABLE_AUTHORITY event that names the db entry that verified an
// image.
func (d SignatureData) Bytes() []byte {
	return append(appendGUID(make([]byte, 0, guidSize+len(d.Data)), d.Owner), d.Data...)
}

// SignatureList is one EFI_SIGNATURE_LIST (UEFI spec 32.4.1): signatures of
// one type and one size, with an optional type-specific header.
type SignatureList struct {
	Type       GUID
	Header     []byte
	Signatures []SignatureData
}

// signatureListHeaderSize is sizeof(EFI_SIGNATURE_LIST) without the
// signature header: SignatureType, SignatureListSize, SignatureHeaderSize,
// SignatureSize.
const signatureListHeaderSize = guidSize + 4 + 4 + 4

// maxListSize bounds what this package writes or reads in one list: UEFI
// variables are far smaller, and the 32-bit size fields must not wrap.
const maxListSize = 1 << 30

// AppendBinary appends the EFI_SIGNATURE_LIST encoding of l to b. Every
// signature must have the same size (SignatureSize is per list), and a list
// needs at least one signature.
func (l SignatureList) AppendBinary(b []byte) ([]byte, error) {
	if len(l.Signatures) == 0 {
		return nil, errors.New("signature list: no signatures")
	}
	sigSize := guidSize + len(l.Signatures[0].Data)
	for i, s := range l.Signatures {
		if guidSize+len(s.Data) != sigSize {
			return nil, fmt.Errorf("signature list: signature %d is %d bytes, signature 0 is %d: one list holds one size", i, guidSize+len(s.Data), sigSize)
		}
	}
	total := signatureListHeaderSize + len(l.Header) + len(l.Signatures)*sigSize
	if total > maxListSize {
		return nil, fmt.Errorf("signature list: %d bytes is too large", total)
	}
	b = appendGUID(b, l.Type)
	b = binary.LittleEndian.AppendUint32(b, uint32(total))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(l.Header)))
	b = binary.LittleEndian.AppendUint32(b, uint32(sigSize))
	b = append(b, l.Header...)
	for _, s := range l.Signatures {
		b = appendGUID(b, s.Owner)
		b = append(b, s.Data...)
	}
	return b, nil
}

// MarshalSignatureLists returns the concatenated EFI_SIGNATURE_LIST
// encodings of lists: the content of a db, dbx, KEK or PK variable.
func MarshalSignatureLists(lists ...SignatureList) ([]byte, error) {
	var b []byte
	for i, l := range lists {
		var err error
		if b, err = l.AppendBinary(b); err != nil {
			return nil, fmt.Errorf("list %d: %w", i, err)
		}
	}
	return b, nil
}

// X509SignatureList returns the EFI_SIGNATURE_LIST of type
// EFI_CERT_X509_GUID holding the one DER certificate der owned by owner:
// what efi-updatevar, sbsiglist and cert-to-efi-sig-list write.
func X509SignatureList(owner GUID, der []byte) []byte {
	b, err := SignatureList{Type: CertX509GUID, Signatures: []SignatureData{{Owner: owner, Data: der}}}.AppendBinary(nil)
	if err != nil {
		// Only a certificate over maxListSize gets here.
		return nil
	}
	return b
}

// PlaceholderOwner (a0baa8a3-041d-48a8-bc87-c36d121b5e3d) is the
// signature owner of [PlaceholderDBX]'s entry:
// the GUID virt-fw-vars (python3-virt-firmware) gives its dummy dbx entry
// whatever owner the other keys have (also the owner EDK2's
// EnrollDefaultKeys uses for its test keys).
var PlaceholderOwner = GUID{0xa0, 0xba, 0xa8, 0xa3, 0x04, 0x1d, 0x48, 0xa8, 0xbc, 0x87, 0xc3, 0x6d, 0x12, 0x1b, 0x5e, 0x3d}

// PlaceholderDBX returns a dbx for firmware that has none: one
// EFI_CERT_SHA256_GUID list with the SHA-256 of the empty string, owned by
// [PlaceholderOwner]. A present dbx is what some firmware and shims expect;
// this one forbids nothing. It is byte for byte the dbx virt-fw-vars
// --set-pk writes, so that PCR 7 can be predicted for an OVMF variable store
// enrolled with it (a real deployment passes the dbx it enrolls).
func PlaceholderDBX() []byte {
	empty := sha256.Sum256(nil)
	b, _ := SignatureList{Type: CertSHA256GUID, Signatures: []SignatureData{{Owner: PlaceholderOwner, Data: empty[:]}}}.AppendBinary(nil)
	return b
}

// ParseSignatureLists parses b as a sequence of EFI_SIGNATURE_LIST
// structures filling it exactly. It checks every size field against the
// data and the others (SignatureSize at least 16, a whole number of
// signatures, at least one signature per list) and never allocates more
// than len(b). It does not interpret the signatures.
func ParseSignatureLists(b []byte) ([]SignatureList, error) {
	var lists []SignatureList
	for off := 0; off < len(b); {
		rest := b[off:]
		if len(rest) < signatureListHeaderSize {
			return nil, fmt.Errorf("signature list at offset %d: %d bytes left, header needs %d", off, len(rest), signatureListHeaderSize)
		}
		typ := readGUID(rest)
		listSize := uint64(binary.LittleEndian.Uint32(rest[16:]))
		hdrSize := uint64(binary.LittleEndian.Uint32(rest[20:]))
		sigSize := uint64(binary.LittleEndian.Uint32(rest[24:]))
		switch {
		case listSize > uint64(len(rest)):
			return nil, fmt.Errorf("signature list at offset %d: SignatureListSize %d exceeds the %d bytes left", off, listSize, len(rest))
		case listSize < signatureListHeaderSize+hdrSize:
			return nil, fmt.Errorf("signature list at offset %d: SignatureListSize %d is smaller than its headers (%d)", off, listSize, signatureListHeaderSize+hdrSize)
		case sigSize < guidSize:
			return nil, fmt.Errorf("signature list at offset %d: SignatureSize %d is smaller than the owner GUID", off, sigSize)
		}
		body := listSize - signatureListHeaderSize - hdrSize
		if body == 0 || body%sigSize != 0 {
			return nil, fmt.Errorf("signature list at offset %d: %d bytes of signatures is not a positive multiple of SignatureSize %d", off, body, sigSize)
		}
		l := SignatureList{Type: typ}
		p := rest[signatureListHeaderSize:listSize]
		if hdrSize > 0 {
			l.Header = append([]byte(nil), p[:hdrSize]...)
		}
		p = p[hdrSize:]
		for len(p) > 0 {
			l.Signatures = append(l.Signatures, SignatureData{
				Owner: readGUID(p),
				Data:  append([]byte(nil), p[guidSize:sigSize]...),
			})
			p = p[sigSize:]
		}
		lists = append(lists, l)
		off += int(listSize)
	}
	return lists, nil
}
