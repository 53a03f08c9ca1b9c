package uki

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf16"
)

// PCRs systemd-stub measures into (systemd docs/TPM2_PCR_MEASUREMENTS.md).
const (
	// PCRKernelBoot holds the UKI's sections (TPM2_PCR_KERNEL_BOOT).
	PCRKernelBoot = 11
	// PCRKernelConfig holds the addons' and any override's command line
	// (TPM2_PCR_KERNEL_CONFIG).
	PCRKernelConfig = 12
)

// measuredSections is, per stub release, the order in which systemd-stub
// measures a UKI's sections into PCR 11: the unified_sections[] table of
// that release's src/boot/efi (stub.c/uki.h). Only these releases are
// known; their orders were checked against booted guests' PCR 11 (see
// docs/image.md).
var measuredSections = map[int][]string{
	252: {".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".pcrpkey"},
	254: {".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".uname", ".sbat", ".pcrpkey"},
	257: {".linux", ".osrel", ".cmdline", ".initrd", ".ucode", ".splash", ".dtb", ".uname", ".sbat", ".pcrpkey", ".profile", ".dtbauto", ".hwids"},
}

// SupportedStubs lists the systemd-stub releases whose PCR 11 the predictor
// knows.
func SupportedStubs() []int {
	var v []int
	for k := range measuredSections {
		v = append(v, k)
	}
	slices.Sort(v)
	return v
}

// Event is one TPM extend: what was measured and the digest extended.
type Event struct {
	PCR         int      `json:"pcr"`
	Description string   `json:"description"`
	Digest      [32]byte `json:"-"`
}

// Extend returns the SHA-256 PCR value after extending zero with each event
// in order (TPM 2.0 Part 1, 17.2: new = H(old || digest)).
func Extend(events []Event) [32]byte {
	var pcr [32]byte
	for _, e := range events {
		pcr = sha256.Sum256(append(pcr[:], e.Digest[:]...))
	}
	return pcr
}

// KernelBootEvents returns the PCR 11 events systemd-stub makes when it
// starts the UKI b: for each section its release measures, in that order,
// the section name with its NUL, then the section's VirtualSize bytes (both
// as EV_IPL; systemd docs/TPM2_PCR_MEASUREMENTS.md, "PCR 11, EV_IPL, PE
// section name / PE section data"). A stub release the predictor does not
// know is refused by name. The values are those before any userspace phase
// measurement (systemd-pcrphase), which confidisk's initrd does not make.
func KernelBootEvents(b []byte) ([]Event, error) {
	im, err := parseImage(b)
	if err != nil {
		return nil, err
	}
	st, err := im.stub()
	if err != nil {
		return nil, err
	}
	if st.Kind != KindStub {
		return nil, fmt.Errorf("%s: an addon is not measured into pcr 11", st)
	}
	order, ok := measuredSections[st.Major]
	if !ok {
		return nil, fmt.Errorf("%s: the pcr 11 predictor knows systemd-stub %s only", st, joinInts(SupportedStubs()))
	}
	var ev []Event
	for _, name := range order {
		s := im.section(name)
		if s == nil {
			continue
		}
		ev = append(ev,
			Event{PCR: PCRKernelBoot, Description: "section name " + name, Digest: sha256.Sum256(append([]byte(name), 0))},
			Event{PCR: PCRKernelBoot, Description: "section data " + name, Digest: sha256.Sum256(im.mapped(s))})
	}
	if len(ev) == 0 {
		return nil, errors.New("no measured section: not a uki")
	}
	return ev, nil
}

// CommandLineEvent is the digest systemd-stub (and the kernel's EFI stub,
// for PCR 9) extends for a command line: SHA-256 of its UTF-16LE encoding
// with the terminating NUL (systemd src/boot/efi/measure.c,
// tpm_log_load_options).
func CommandLineEvent(pcr int, what, cmdline string) Event {
	u := utf16.Encode([]rune(cmdline))
	b := make([]byte, 0, 2*len(u)+2)
	for _, c := range u {
		b = le.AppendUint16(b, c)
	}
	b = append(b, 0, 0)
	return Event{PCR: pcr, Description: what + ": " + cmdline, Digest: sha256.Sum256(b)}
}

// AddonEvents returns the PCR 12 events of a boot's command-line addons: one
// per directory the stub reads (the global \loader\addons first, then the
// UKI's <name>.efi.extra.d), each the addons' .cmdline contents of that
// directory, in file-name order, joined by spaces (systemd 254+ stub.c,
// cmdline_append_and_measure_addons). A directory without addons adds no
// event.
func AddonEvents(dirs ...[]string) []Event {
	var ev []Event
	for _, cmdlines := range dirs {
		if len(cmdlines) == 0 {
			continue
		}
		ev = append(ev, CommandLineEvent(PCRKernelConfig, "addon command line", strings.Join(cmdlines, " ")))
	}
	return ev
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}
