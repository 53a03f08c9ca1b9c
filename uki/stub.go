package uki

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
)

// Kind says what a systemd EFI stub starts.
type Kind string

const (
	// KindStub is linuxx64.efi.stub, the base of a UKI ("systemd-stub").
	KindStub Kind = "stub"
	// KindAddon is addonx64.efi.stub, the base of a PE addon
	// ("systemd-addon").
	KindAddon Kind = "addon"
)

// Stub identifies a systemd EFI stub (or a UKI or addon built on one) by the
// LoaderInfo string in its .sdmagic section (systemd src/boot/efi/stub.c,
// addon.c: "#### LoaderInfo: systemd-stub <version> ####").
type Stub struct {
	Kind Kind `json:"kind"`
	// Version is the full version, e.g. "254.26-1~bpo12+1".
	Version string `json:"version"`
	// Major is the systemd release, e.g. 254.
	Major int `json:"major"`
}

func (s Stub) String() string { return "systemd-" + string(s.Kind) + " " + s.Version }

var sdmagicRE = regexp.MustCompile(`^#### LoaderInfo: systemd-(stub|addon) (([0-9]+)[^ ]*) ####$`)

// Identify reads the stub version of a PE image from its .sdmagic section.
func Identify(b []byte) (Stub, error) {
	im, err := parseImage(b)
	if err != nil {
		return Stub{}, err
	}
	return im.stub()
}

func (im *image) stub() (Stub, error) {
	s := im.section(".sdmagic")
	if s == nil {
		return Stub{}, fmt.Errorf("no .sdmagic section: not a systemd-stub or systemd-addon image")
	}
	magic := bytes.TrimRight(im.mapped(s), "\x00")
	m := sdmagicRE.FindSubmatch(magic)
	if m == nil {
		return Stub{}, fmt.Errorf(".sdmagic %q is not a systemd LoaderInfo string", magic)
	}
	major, err := strconv.Atoi(string(m[3]))
	if err != nil {
		return Stub{}, fmt.Errorf(".sdmagic version %q: %w", m[2], err)
	}
	kind := KindStub
	if string(m[1]) == "addon" {
		kind = KindAddon
	}
	return Stub{Kind: kind, Version: string(m[2]), Major: major}, nil
}

// Info describes a UKI, an addon or a bare stub.
type Info struct {
	Stub Stub `json:"stub"`
	// ImageBase, SectionAlignment and FileAlignment are the PE optional
	// header's.
	ImageBase        uint64    `json:"image_base"`
	SectionAlignment uint32    `json:"section_alignment"`
	FileAlignment    uint32    `json:"file_alignment"`
	Sections         []Section `json:"sections"`
}

// Inspect parses a systemd-stub based PE image.
func Inspect(b []byte) (*Info, error) {
	im, err := parseImage(b)
	if err != nil {
		return nil, err
	}
	st, err := im.stub()
	if err != nil {
		return nil, err
	}
	return &Info{Stub: st, ImageBase: im.imageBase(), SectionAlignment: im.sectionAlignment(), FileAlignment: im.fileAlignment(), Sections: im.sections}, nil
}

// SectionData returns the bytes of section name as systemd-stub sees them
// (VirtualSize bytes), or nil when there is none.
func SectionData(b []byte, name string) ([]byte, error) {
	im, err := parseImage(b)
	if err != nil {
		return nil, err
	}
	s := im.section(name)
	if s == nil {
		return nil, nil
	}
	return im.mapped(s), nil
}
