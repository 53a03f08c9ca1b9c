package tpm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"slices"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Quote sentinel errors, one per reason a quote fails verification; test
// with errors.Is.
var (
	// ErrQuoteSignature: the signature does not verify over the attestation
	// structure with the given key (tampered data, or another key/TPM).
	ErrQuoteSignature = errors.New("quote signature does not verify")

	// ErrQuoteNonce: the quote's extraData is not the verifier's nonce
	// (a replayed or foreign quote).
	ErrQuoteNonce = errors.New("quote nonce does not match")

	// ErrQuotePCRDigest: the quote's pcrDigest is not the digest of the PCR
	// values the verifier was given.
	ErrQuotePCRDigest = errors.New("quote pcr digest does not match the pcr values")

	// ErrQuoteSelection: the quote covers other PCRs or another bank than
	// the verifier expects.
	ErrQuoteSelection = errors.New("quote covers other pcrs than expected")

	// ErrMalformedAttest: the signed data is not a TPM-generated
	// TPMS_ATTEST of type TPM_ST_ATTEST_QUOTE, or a quote field is malformed.
	ErrMalformedAttest = errors.New("malformed quote attestation data")
)

// akAttributes are a restricted signing key's (Part 1, section 25.2.2
// "Restricted signing keys"; Part 2, section 8.3): the TPM signs only data
// it generated itself (TPMS_ATTEST beginning with TPM_GENERATED_VALUE) or
// digests it computed, so a quote cannot be forged with TPM2_Sign. The key
// has no authorization value, so it is noDA: otherwise every reset without
// TPM2_Shutdown (a power cut, a killed VM) would count towards the
// dictionary-attack lockout and the guest would soon be unable to attest.
var akAttributes = tpm2.TPMAObject{
	FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, UserWithAuth: true,
	NoDA: true, Restricted: true, SignEncrypt: true,
}

// AKTemplate is the attestation key's template: ECC NIST P-256, ECDSA with
// SHA-256, restricted signing, fixedTPM, fixedParent, sensitiveDataOrigin,
// userWithAuth, noDA, sha256 names, empty authPolicy and unique (Part 2, sections
// 12.2.4 and 12.2.3.6).
func AKTemplate() tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgECC,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: akAttributes,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme: tpm2.TPMTECCScheme{
				Scheme:  tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			CurveID: tpm2.TPMECCNistP256,
			KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
	}
}

// AK is a loaded attestation key.
type AK struct {
	// Handle is the transient handle; [AK.Flush] frees it.
	Handle tpm2.TPMHandle
	// Name is the key's Name (Part 1, section 16), the qualifiedSigner of
	// its quotes under the endorsement hierarchy.
	Name tpm2.TPM2BName
	// Public is the marshalled TPMT_PUBLIC of the key (no size prefix).
	Public []byte
	// PublicKey is the key as an *ecdsa.PublicKey.
	PublicKey crypto.PublicKey
}

// CreateAK creates the attestation key as a primary key of the endorsement
// hierarchy from [AKTemplate] (TPM2_CreatePrimary, Part 3, section 24.1),
// with the endorsement hierarchy's authorisation empty.
//
// A primary key is derived from the hierarchy's seed and the template
// alone (Part 1, section 26.3), so every call on every boot of one TPM
// gives the same key: nothing needs to be stored or made persistent, and a
// verifier can enrol the AK's public key once per TPM. The endorsement
// hierarchy is chosen over the owner hierarchy because its seed (the EPS)
// survives TPM2_Clear, which replaces the owner's seed (Part 1, section
// 14.3.3): the AK stays the same for the life of the TPM, as the EK does,
// and can later be bound to the EK certificate with TPM2_ActivateCredential.
// The EPS changes only with TPM2_ChangeEPS, which needs the platform
// authorisation.
//
// The caller frees the transient handle with [AK.Flush].
func CreateAK(t transport.TPM) (*AK, error) {
	cp, err := (tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(AKTemplate()),
	}).Execute(t)
	if err != nil {
		return nil, fmt.Errorf("create attestation key: %w", err)
	}
	pub, err := cp.OutPublic.Contents()
	if err != nil {
		(tpm2.FlushContext{FlushHandle: cp.ObjectHandle}).Execute(t)
		return nil, fmt.Errorf("create attestation key: %w", err)
	}
	pubBytes := tpm2.Marshal(pub)
	k, err := AKPublicKey(pubBytes)
	if err != nil {
		(tpm2.FlushContext{FlushHandle: cp.ObjectHandle}).Execute(t)
		return nil, fmt.Errorf("create attestation key: %w", err)
	}
	return &AK{Handle: cp.ObjectHandle, Name: cp.Name, Public: pubBytes, PublicKey: k}, nil
}

// Flush frees the AK's transient handle (TPM2_FlushContext, Part 3,
// section 28.4).
func (ak *AK) Flush(t transport.TPM) error {
	if _, err := (tpm2.FlushContext{FlushHandle: ak.Handle}).Execute(t); err != nil {
		return fmt.Errorf("flush attestation key: %w", err)
	}
	return nil
}

// AKPublicKey reads a marshalled TPMT_PUBLIC (as [AK.Public]) and returns
// its key after checking that it is a restricted ECDSA-SHA256 P-256
// signing key with fixedTPM: a verifier must not accept quotes from an
// unrestricted key, which signs any digest it is given (Part 1, section
// 25.2.2), nor from a key that may leave the TPM.
func AKPublicKey(public []byte) (crypto.PublicKey, error) {
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](public)
	if err != nil {
		return nil, fmt.Errorf("parse attestation key public area: %w", err)
	}
	if pub.Type != tpm2.TPMAlgECC {
		return nil, fmt.Errorf("%w: attestation key type 0x%x (want ecc)", ErrUnsupported, pub.Type)
	}
	a := pub.ObjectAttributes
	if !a.Restricted || !a.SignEncrypt || a.Decrypt || !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin {
		return nil, errors.New("attestation key is not a restricted signing key with fixedTPM, fixedParent and sensitiveDataOrigin")
	}
	parms, err := pub.Parameters.ECCDetail()
	if err != nil {
		return nil, fmt.Errorf("parse attestation key parameters: %w", err)
	}
	if parms.CurveID != tpm2.TPMECCNistP256 || parms.Scheme.Scheme != tpm2.TPMAlgECDSA {
		return nil, fmt.Errorf("%w: attestation key curve 0x%x, scheme 0x%x (want nist p-256, ecdsa)", ErrUnsupported, parms.CurveID, parms.Scheme.Scheme)
	}
	if d, err := parms.Scheme.Details.ECDSA(); err != nil || d.HashAlg != tpm2.TPMAlgSHA256 {
		return nil, fmt.Errorf("%w: attestation key scheme hash is not sha256", ErrUnsupported)
	}
	point, err := pub.Unique.ECC()
	if err != nil {
		return nil, fmt.Errorf("parse attestation key point: %w", err)
	}
	k, err := tpm2.ECDSAPub(parms, point)
	if err != nil {
		return nil, fmt.Errorf("parse attestation key point: %w", err)
	}
	return k, nil
}

// QuoteResult is a quote with the PCR values it covers.
type QuoteResult struct {
	// Attest is the signed TPMS_ATTEST (Part 2, section 10.12.12), without
	// the TPM2B_ATTEST size prefix.
	Attest []byte
	// Signature is the AK's ECDSA signature over SHA-256(Attest), ASN.1 DER
	// (SEQUENCE { r INTEGER, s INTEGER }, as crypto/ecdsa.VerifyASN1 reads
	// it), converted from the TPM's TPMS_SIGNATURE_ECDSA r and s.
	Signature []byte
	// Bank is the PCR bank quoted.
	Bank Bank
	// PCRs are the quoted PCRs, sorted.
	PCRs []int
	// PCRValues are the values of PCRs the quote's pcrDigest covers.
	PCRValues map[int][]byte
}

// maxQuoteTries bounds how often [Quote] re-reads PCRs that changed
// between the read and the quote.
const maxQuoteTries = 3

// Quote has the AK sign the current values of pcrs in bank with nonce as
// qualifying data (TPM2_Quote, Part 3, section 18.4; nonce at most 64
// bytes). It reads the PCR values (TPM2_PCR_Read) before the quote and
// checks that the quote's pcrDigest is their digest; when a PCR was
// extended in between it tries again, so the values returned are exactly
// those the quote covers.
func Quote(t transport.TPM, ak *AK, bank Bank, pcrs []int, nonce []byte) (*QuoteResult, error) {
	alg, err := bank.Alg()
	if err != nil {
		return nil, fmt.Errorf("quote: %w", err)
	}
	if len(pcrs) == 0 {
		return nil, errors.New("quote: no pcrs")
	}
	if err := checkPCRs(pcrs); err != nil {
		return nil, fmt.Errorf("quote: %w", err)
	}
	if len(nonce) > 64 {
		return nil, fmt.Errorf("quote: nonce of %d bytes (at most 64)", len(nonce))
	}
	sorted := sortedPCRs(pcrs)
	for range maxQuoteTries {
		vals, err := ReadPCRs(t, bank, sorted)
		if err != nil {
			return nil, fmt.Errorf("quote: %w", err)
		}
		rsp, err := (tpm2.Quote{
			SignHandle:     tpm2.AuthHandle{Handle: ak.Handle, Name: ak.Name, Auth: tpm2.PasswordAuth(nil)},
			QualifyingData: tpm2.TPM2BData{Buffer: nonce},
			InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
			PCRSelect:      selection(alg, sorted),
		}).Execute(t)
		if err != nil {
			return nil, fmt.Errorf("quote: %w", err)
		}
		attest := rsp.Quoted.Bytes()
		_, info, err := parseQuoteAttest(attest)
		if err != nil {
			return nil, fmt.Errorf("quote: the tpm returned %w", err)
		}
		sig, err := rsp.Signature.Signature.ECDSA()
		if err != nil {
			return nil, fmt.Errorf("quote: signature: %w", err)
		}
		der, err := asn1.Marshal(struct{ R, S *big.Int }{
			new(big.Int).SetBytes(sig.SignatureR.Buffer), new(big.Int).SetBytes(sig.SignatureS.Buffer)})
		if err != nil {
			return nil, fmt.Errorf("quote: encode signature: %w", err)
		}
		if !bytes.Equal(info.PCRDigest.Buffer, quotePCRDigest(sorted, vals)) {
			continue // a PCR changed between the read and the quote
		}
		return &QuoteResult{Attest: attest, Signature: der, Bank: bank, PCRs: sorted, PCRValues: vals}, nil
	}
	return nil, fmt.Errorf("quote: pcrs %v kept changing between reading and quoting them (%d tries)", sorted, maxQuoteTries)
}

// quotePCRDigest is a quote's pcrDigest for the AK's scheme hash (SHA-256):
// the hash of the selected PCR values concatenated in selection order
// (Part 3, section 18.4.1; Part 1, section 17.6.2).
func quotePCRDigest(pcrs []int, vals map[int][]byte) []byte {
	h := sha256.New()
	for _, p := range pcrs {
		h.Write(vals[p])
	}
	return h.Sum(nil)
}

// parseQuoteAttest unmarshals a TPMS_ATTEST and checks that it is a
// TPM-generated quote (magic TPM_GENERATED_VALUE, type
// TPM_ST_ATTEST_QUOTE; Part 2, sections 10.12.12 and 6.2).
func parseQuoteAttest(b []byte) (*tpm2.TPMSAttest, *tpm2.TPMSQuoteInfo, error) {
	a, err := tpm2.Unmarshal[tpm2.TPMSAttest](b)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrMalformedAttest, err)
	}
	if n := len(tpm2.Marshal(a)); n != len(b) {
		return nil, nil, fmt.Errorf("%w: %d bytes after the structure", ErrMalformedAttest, len(b)-n)
	}
	if a.Magic != tpm2.TPMGeneratedValue {
		return nil, nil, fmt.Errorf("%w: magic 0x%08x is not TPM_GENERATED_VALUE", ErrMalformedAttest, uint32(a.Magic))
	}
	if a.Type != tpm2.TPMSTAttestQuote {
		return nil, nil, fmt.Errorf("%w: type 0x%04x is not TPM_ST_ATTEST_QUOTE", ErrMalformedAttest, uint16(a.Type))
	}
	q, err := a.Attested.Quote()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrMalformedAttest, err)
	}
	return a, q, nil
}

// QuoteInfo is what a verified quote tells about the TPM.
type QuoteInfo struct {
	// Clock is the TPM's clock in milliseconds (TPMS_CLOCK_INFO, Part 2,
	// section 10.11.1); it advances while the TPM is powered.
	Clock uint64 `json:"clock"`
	// ResetCount counts TPM Resets (reboots) since the last TPM2_Clear.
	ResetCount uint32 `json:"resetCount"`
	// RestartCount counts TPM Restarts and Resumes since the last Reset.
	RestartCount uint32 `json:"restartCount"`
	// Safe says that no larger Clock value was ever reported.
	Safe bool `json:"safe"`
	// FirmwareVersion is the vendor-specific firmware version.
	FirmwareVersion uint64 `json:"firmwareVersion"`
	// Signer is the qualifiedSigner, the AK's Qualified Name (Part 1,
	// section 16.5): for the endorsement primary of [CreateAK],
	// nameAlg ‖ SHA-256(TPM_RH_ENDORSEMENT ‖ Name).
	Signer []byte `json:"signer"`
	// Bank and PCRs are the quoted selection.
	Bank Bank  `json:"bank"`
	PCRs []int `json:"pcrs"`
}

// VerifyQuote checks a quote offline: the ECDSA signature of pub (an
// *ecdsa.PublicKey; see [AKPublicKey]) over SHA-256(q.Attest)
// ([ErrQuoteSignature]); that q.Attest is a TPMS_ATTEST with magic
// TPM_GENERATED_VALUE and type TPM_ST_ATTEST_QUOTE ([ErrMalformedAttest]);
// that its extraData is nonce ([ErrQuoteNonce]); that its PCR selection is
// exactly the PCRs of pcrValues in bank ([ErrQuoteSelection]); and that its
// pcrDigest is the SHA-256 of pcrValues concatenated in index order
// ([ErrQuotePCRDigest]) (Part 3, section 18.4; Part 2, section 10.12).
// pcrValues are the values the verifier expects (or the ones the quote came
// with, when those are then checked against a reference or event log);
// q.Bank, q.PCRs and q.PCRValues are not used.
func VerifyQuote(pub crypto.PublicKey, q *QuoteResult, nonce []byte, pcrValues map[int][]byte, bank Bank) (*QuoteInfo, error) {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("verify quote: %w: key type %T (want an ecdsa attestation key)", ErrUnsupported, pub)
	}
	alg, err := bank.Alg()
	if err != nil {
		return nil, fmt.Errorf("verify quote: %w", err)
	}
	digest := sha256.Sum256(q.Attest)
	if !ecdsa.VerifyASN1(k, digest[:], q.Signature) {
		return nil, fmt.Errorf("verify quote: %w", ErrQuoteSignature)
	}
	a, qi, err := parseQuoteAttest(q.Attest)
	if err != nil {
		return nil, fmt.Errorf("verify quote: %w", err)
	}
	if !bytes.Equal(a.ExtraData.Buffer, nonce) {
		return nil, fmt.Errorf("verify quote: %w: the quote has %x", ErrQuoteNonce, a.ExtraData.Buffer)
	}
	want := make([]int, 0, len(pcrValues))
	for p := range pcrValues {
		want = append(want, p)
	}
	want = sortedPCRs(want)
	gotAlg, got, err := singleSelection(qi.PCRSelect)
	if err != nil {
		return nil, fmt.Errorf("verify quote: %w", err)
	}
	if gotAlg != alg || !slices.Equal(got, want) {
		gb, _ := bankOf(gotAlg)
		return nil, fmt.Errorf("verify quote: %w: the quote covers %s pcrs %v, want %s pcrs %v", ErrQuoteSelection, gb, got, bank, want)
	}
	h, _ := bank.Hash()
	for _, p := range want {
		if len(pcrValues[p]) != h.Size() {
			return nil, fmt.Errorf("verify quote: %w: the value given for pcr %d has %d bytes, want %d for bank %s", ErrQuotePCRDigest, p, len(pcrValues[p]), h.Size(), bank)
		}
	}
	if !bytes.Equal(qi.PCRDigest.Buffer, quotePCRDigest(want, pcrValues)) {
		return nil, fmt.Errorf("verify quote: %w", ErrQuotePCRDigest)
	}
	return &QuoteInfo{
		Clock:           a.ClockInfo.Clock,
		ResetCount:      a.ClockInfo.ResetCount,
		RestartCount:    a.ClockInfo.RestartCount,
		Safe:            a.ClockInfo.Safe,
		FirmwareVersion: a.FirmwareVersion,
		Signer:          a.QualifiedSigner.Buffer,
		Bank:            bank,
		PCRs:            want,
	}, nil
}

// singleSelection decodes a PCR selection of one bank into its PCR
// indices (TPMS_PCR_SELECTION, Part 2, section 10.6.2).
func singleSelection(sel tpm2.TPMLPCRSelection) (tpm2.TPMIAlgHash, []int, error) {
	var nonEmpty []tpm2.TPMSPCRSelection
	for _, s := range sel.PCRSelections {
		if slices.ContainsFunc(s.PCRSelect, func(b byte) bool { return b != 0 }) {
			nonEmpty = append(nonEmpty, s)
		}
	}
	if len(nonEmpty) != 1 {
		return 0, nil, fmt.Errorf("%w: the quote selects pcrs of %d banks, want 1", ErrQuoteSelection, len(nonEmpty))
	}
	var pcrs []int
	for i, b := range nonEmpty[0].PCRSelect {
		for bit := range 8 {
			if b&(1<<bit) != 0 {
				pcrs = append(pcrs, i*8+bit)
			}
		}
	}
	return nonEmpty[0].Hash, pcrs, nil
}
