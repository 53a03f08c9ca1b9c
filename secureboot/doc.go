// Package secureboot makes and uses the keys of a UEFI Secure Boot
// hierarchy for confidisk's confidential VMs:
//
//   - [GenerateKeys] creates PK, KEK and db (RSA-2048, self-signed X.509 v3);
//     [KeySet.WriteDir] writes them with their EFI_SIGNATURE_LISTs (UEFI
//     spec 2.10, section 32.4.1 "Signature Database") and their signed
//     updates, EFI_VARIABLE_AUTHENTICATION_2 payloads (section 8.2.2,
//     time-based authenticated variables), and [LoadKeySet] reads them back;
//   - [LoadSigner] and [Signer.SignPE] Authenticode-sign a PE/COFF image (a
//     UKI or an addon) with the db key (Microsoft "Windows Authenticode
//     Portable Executable Signature Format"), and [AuthenticodeDigest] gives
//     the image digest firmware verifies and measures into PCR 4;
//   - [PredictPCR7] computes the PCR 7 value of an OVMF boot with Secure
//     Boot enabled from the enrolled variables (TCG PC Client Platform
//     Firmware Profile, 3.3.4.8 and 10.4.4). It is not yet checked against a
//     real boot.
//
// Signatures are deterministic (RSA PKCS#1 v1.5, no signing time), so the
// same keys, inputs and timestamps give byte-identical outputs. The PE and
// PKCS#7 work is done by github.com/foxboron/go-uefi (authenticode, pkcs7);
// the signature list and authenticated-variable encodings are this
// package's, because go-uefi's readers stop the process (log.Fatal) on
// malformed input and its variable signer stamps the current time.
package secureboot
