package uki

import (
	"crypto/sha256"
	"strings"
)

// DefaultPhases are the boot phases systemd-measure sign (and ukify) sign
// PCR 11 for unless told otherwise: what systemd-pcrphase measures as a
// systemd initrd and the system come up (systemd-measure(1), --phase=).
// confidisk's own initrd measures no phase, so its PCR 11 is the empty
// phase "" (the stub's measurements alone), which [ConfidiskPhases] adds.
func DefaultPhases() []string {
	return []string{"enter-initrd", "enter-initrd:leave-initrd", "enter-initrd:leave-initrd:sysinit", "enter-initrd:leave-initrd:sysinit:ready"}
}

// ConfidiskPhases are the phases `confidisk image build` signs by default:
// the empty phase, in which confidisk boot unseals, then [DefaultPhases].
func ConfidiskPhases() []string { return append([]string{""}, DefaultPhases()...) }

// PhaseValue is PCR 11 after the phase's words (colon-separated) were
// measured on top of base, the value the stub left: systemd-pcrphase
// extends SHA-256 of each word, without a NUL (systemd
// src/boot/measure.c, pcrphase.c; docs/TPM2_PCR_MEASUREMENTS.md, "PCR 11,
// phase strings"). The empty phase is base.
func PhaseValue(base [32]byte, phase string) [32]byte {
	pcr := base
	if phase == "" {
		return pcr
	}
	for _, w := range strings.Split(phase, ":") {
		d := sha256.Sum256([]byte(w))
		pcr = sha256.Sum256(append(pcr[:], d[:]...))
	}
	return pcr
}
