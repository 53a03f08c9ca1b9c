package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/confidisk/confidisk/uki"
)

// stubPackages are the systemd-boot-efi builds the lab takes its EFI stubs
// from, by systemd release. bookworm ships 252, which has no addons; 254
// (bookworm-backports) and 257 (trixie) do.
var stubPackages = map[int]debPackage{
	252: {"systemd-boot-efi", "bookworm", "252.39-1~deb12u2", "8f2b81bdcfafc466882a0cae460272dbf10d8d97c6a3c1c6ea33038c155a2f5e"},
	254: {"systemd-boot-efi", "bookworm-backports", "254.26-1~bpo12+1", "aef15d1d12fb9ba9674ed93595ce2659533ae75ab1379b2f960f511b577e8c96"},
	257: {"systemd-boot-efi", "trixie", "257.13-1~deb13u1", "390ecdcef9bbb753f51bb6d8f696bdae2f1dbedde7239c49ccb2512f137a8933"},
}

// StubSet locates one unpacked systemd-boot-efi package.
type StubSet struct {
	Major   int
	Version string
	// Linux is linuxx64.efi.stub; Addon is addonx64.efi.stub ("" before
	// 254).
	Linux, Addon string
}

// Stubs returns the systemd EFI stubs of the given release (252, 254 or
// 257), unpacked into cacheDir/stub/<version> on first use ("" means
// [DefaultCacheDir]).
func Stubs(ctx context.Context, cacheDir string, major int) (*StubSet, error) {
	pkg, ok := stubPackages[major]
	if !ok {
		return nil, fmt.Errorf("the lab has no systemd-boot-efi %d (it has 252, 254 and 257)", major)
	}
	dir, err := unpackedDeb(ctx, cacheDir, "stub", pkg)
	if err != nil {
		return nil, err
	}
	efi := filepath.Join(dir, "usr/lib/systemd/boot/efi")
	set := &StubSet{Major: major, Version: pkg.Version, Linux: filepath.Join(efi, "linuxx64.efi.stub")}
	if major >= 254 {
		set.Addon = filepath.Join(efi, "addonx64.efi.stub")
	}
	return set, nil
}

// UnsignedCopy returns the UKI signed rebuilt on the stub file stub without
// its Authenticode signature: the same sections (.linux, .osrel, .cmdline,
// .initrd, .uname) in a new image, what a host without the db key can make
// from a signed UKI.
func UnsignedCopy(signed []byte, stub string) ([]byte, error) {
	var parts []uki.Part
	for _, name := range []string{".linux", ".osrel", ".cmdline", ".initrd", ".uname"} {
		d, err := uki.SectionData(signed, name)
		if err != nil {
			return nil, err
		}
		if d == nil {
			return nil, fmt.Errorf("uki has no %s section", name)
		}
		parts = append(parts, uki.Part{Name: name, Data: d})
	}
	st, err := os.ReadFile(stub)
	if err != nil {
		return nil, err
	}
	return uki.Assemble(st, parts)
}
