// Package tpm talks to a TPM 2.0 (a vTPM in a confidential VM, or swtpm in
// tests) through go-tpm's direct tpm2 API. It seals keys under PCR
// policies as systemd does (the "systemd-tpm2" LUKS2 token), measures volume
// keys into PCR 15 as systemd-cryptsetup does, keeps NV counters for
// roll-back protection and produces and verifies quotes.
//
// # Threat model
//
// The host owns the bus between the guest and its vTPM only in the sense
// that it may observe and replay traffic when the vTPM is emulated outside
// the TEE; every command that carries a secret therefore runs in a session
// salted with the storage root key (SRK), so that sealed secrets cross the
// bus only encrypted ([Unseal], [Seal]). A policy digest is public: anyone
// with the SRK public key can forge a sealed blob whose policy they chose,
// which is why the volume key is also measured into PCR 15
// ([MeasureVolumeKey]) and why the boot flow must check the volume it opened.
//
// # Compatibility
//
// Sealed objects, token JSON, the PCR 15 measurement and the
// tpm2-measure.log record follow systemd (src/shared/tpm2-util.c,
// src/cryptsetup/cryptsetup.c, src/cryptenroll/cryptenroll-tpm2.c) so that
// systemd's token plugin opens volumes enrolled here and the other way
// round. Structures and commands follow the TPM 2.0 Library specification
// (Part 1 Architecture, Part 2 Structures, Part 3 Commands, revision 1.59).
//
// # Sealing offline
//
// [SealOffline] seals to a TPM it has never talked to, given its SRK's
// public key ([ParseSRKPublic]: what `systemd-analyze srk` and
// `confidisk tpm srk` print), as systemd-repart --tpm2-device-key= does
// (tpm2-util.c tpm2_calculate_seal): the sealed object is wrapped for
// TPM2_Import under that SRK, and [Unseal] imports it before loading it.
// Only that TPM can; the blob says which SRK it needs (tpm2_srk), so another
// TPM refuses it with [ErrSRKMismatch] before trying.
package tpm
