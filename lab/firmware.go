package lab

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"unicode/utf16"
)

// Firmware makes a [Machine] boot through UEFI firmware (OVMF) from its
// first disk, as a cloud's confidential VM does, instead of QEMU's direct
// kernel boot: no -kernel, -initrd or -append, so the kernel, initrd and
// command line come from the disk's ESP (a UKI).
type Firmware struct {
	// Code is the firmware image (read-only pflash), e.g.
	// OVMF_CODE_4M.secboot.fd.
	Code string
	// Vars is the machine's own variable store (writable pflash): a copy
	// of OVMF_VARS_4M.fd, with Secure Boot keys enrolled by [EnrollKeys].
	Vars string
	// SMM is set for a firmware built with SMM (the secboot builds), which
	// Secure Boot needs so that the guest OS cannot write the variables.
	SMM bool
}

// OVMF files of Debian's ovmf package.
const (
	ovmfDir        = "/usr/share/OVMF"
	OVMFCodeSecure = ovmfDir + "/OVMF_CODE_4M.secboot.fd"
	OVMFVars       = ovmfDir + "/OVMF_VARS_4M.fd"
)

// NewFirmware returns the Secure Boot capable OVMF (SMM) with vars as the
// variable store, which must exist (see [EnrollKeys]).
func NewFirmware(vars string) (*Firmware, error) {
	for _, f := range []string{OVMFCodeSecure, OVMFVars} {
		if !fileExists(f) {
			return nil, &MissingToolError{Tool: filepath.Base(f), Package: "ovmf"}
		}
	}
	if !fileExists(vars) {
		return nil, fmt.Errorf("firmware variable store %s does not exist", vars)
	}
	return &Firmware{Code: OVMFCodeSecure, Vars: vars, SMM: true}, nil
}

// virtFirmware is python3-virt-firmware, whose virt-fw-vars writes
// certificates into an OVMF variable store offline. It is a lab tool only
// (GPL-2): bookworm has it in backports; it runs on bookworm's python3 with
// python3-cryptography, python3-pefile and python3-pkg-resources.
var virtFirmware = debPackage{"python3-virt-firmware", "bookworm-backports", "24.2-1~bpo12+1", "e2ff0cb9ede775507d1e4573fdae87d9c6303bbe4b80913784ff85141bc13a62"}

// SecureBootKeys are the PEM certificates enrolled by [EnrollKeys], with
// the owner GUID of their signature list entries.
type SecureBootKeys struct {
	Owner        string
	PK, KEK, DB  string
	SecureBootOn bool
	// DBXUpdate, when set, is a dbx update (EFI_VARIABLE_AUTHENTICATION_2
	// and the signature lists, as a vendor ships one) whose lists become
	// the dbx in place of the placeholder: a firmware update that
	// changes PCR 7.
	DBXUpdate string
}

// EnrollKeys writes to out a copy of OVMF's empty variable store with PK,
// KEK and db set to the given certificates (and the placeholder dbx
// virt-fw-vars writes: one SHA-256 entry of the empty string, owned by
// Owner) and, with SecureBootOn, Secure Boot enabled. It uses virt-fw-vars
// from the lab cache (downloaded on first use).
func EnrollKeys(ctx context.Context, cacheDir string, k SecureBootKeys, out string) error {
	args := []string{"--set-pk", k.Owner, k.PK, "--add-kek", k.Owner, k.KEK, "--add-db", k.Owner, k.DB}
	if k.DBXUpdate != "" {
		args = append(args, "--set-dbx", k.DBXUpdate)
	}
	if k.SecureBootOn {
		args = append(args, "--sb")
	}
	return virtFwVars(ctx, cacheDir, OVMFVars, out, args...)
}

// AddBootEntry writes to out a copy of the variable store in with one boot
// entry, Boot0000, first in BootOrder: the ESP file path (e.g.
// \EFI\BOOT\BOOTX64.EFI, as a short-form file path device path that the
// firmware expands) with loadOptions as its LoadOptions (UTF-16LE, NUL
// terminated, as a boot manager passes a command line). This is what a host
// that owns the boot entries can do.
func AddBootEntry(ctx context.Context, cacheDir, in, out, path, loadOptions string) error {
	vars := map[string]any{"version": 2, "variables": []map[string]any{
		{"name": "Boot0000", "guid": efiGlobalVariable, "attr": 7, "data": hex.EncodeToString(loadOption("confidisk lab entry", path, loadOptions))},
		{"name": "BootOrder", "guid": efiGlobalVariable, "attr": 7, "data": "0000"},
	}}
	js, err := json.Marshal(vars)
	if err != nil {
		return err
	}
	f := out + ".json"
	if err := os.WriteFile(f, js, 0o644); err != nil {
		return err
	}
	defer os.Remove(f)
	return virtFwVars(ctx, cacheDir, in, out, "--set-json", f)
}

const efiGlobalVariable = "8be4df61-93ca-11d2-aa0d-00e098032b8c"

// loadOption encodes an EFI_LOAD_OPTION (UEFI 2.10, 3.1.3): Attributes
// (LOAD_OPTION_ACTIVE), FilePathListLength, Description (UTF-16LE, NUL),
// the device path (a media file path node, type 4 subtype 4, and the end
// node; 10.3.5.4) and OptionalData.
func loadOption(desc, path, options string) []byte {
	node := utf16z(path)
	dp := append([]byte{4, 4}, binary.LittleEndian.AppendUint16(nil, uint16(4+len(node)))...)
	dp = append(append(dp, node...), 0x7f, 0xff, 4, 0)
	b := binary.LittleEndian.AppendUint32(nil, 1)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(dp)))
	b = append(append(b, utf16z(desc)...), dp...)
	if options != "" {
		b = append(b, utf16z(options)...)
	}
	return b
}

// utf16z is s in UTF-16LE with a terminating NUL.
func utf16z(s string) []byte {
	var b []byte
	for _, c := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, c)
	}
	return append(b, 0, 0)
}

// virtFwVars runs virt-fw-vars from the lab cache on the variable store in,
// writing out.
func virtFwVars(ctx context.Context, cacheDir, in, out string, args ...string) error {
	// Debian's python3, whose modules the packages below install (a
	// python3 earlier in PATH, e.g. pyenv's, would not see them).
	py := "/usr/bin/python3"
	if !fileExists(py) {
		return &MissingToolError{Tool: py, Package: "python3"}
	}
	for mod, pkg := range map[string]string{"cryptography": "python3-cryptography", "pefile": "python3-pefile", "pkg_resources": "python3-pkg-resources"} {
		if _, err := runOut(ctx, "", py, "-c", "import "+mod); err != nil {
			return &MissingToolError{Tool: "python3 module " + mod, Package: pkg}
		}
	}
	if !fileExists(in) {
		return &MissingToolError{Tool: filepath.Base(in), Package: "ovmf"}
	}
	dir, err := unpackedDeb(ctx, cacheDir, "virt-firmware", virtFirmware)
	if err != nil {
		return err
	}
	tmp := out + ".partial"
	os.Remove(tmp)
	cmd := append([]string{"PYTHONPATH=" + filepath.Join(dir, "usr/lib/python3/dist-packages"), py,
		filepath.Join(dir, "usr/bin/virt-fw-vars"), "-i", in, "-o", tmp}, args...)
	if _, err := runOut(ctx, "", "env", cmd...); err != nil {
		return fmt.Errorf("virt-fw-vars: %w", err)
	}
	return os.Rename(tmp, out)
}
