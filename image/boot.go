package image

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/confidisk/confidisk/tpm"
	"github.com/confidisk/confidisk/uki"
)

// ESP paths of the boot files [UKIBoot] writes: the removable-media default
// path that firmware boots without a boot entry (UEFI 2.10, 3.5.1.1), and the
// UKI's own addon directory (systemd-stub(7): <image>.extra.d/*.addon.efi).
const (
	UKIPath = "/EFI/BOOT/BOOTX64.EFI"
	// ExtraDir is the UKI's drop-in directory, where systemd-stub finds
	// its addons and the system extensions it passes to the initrd.
	ExtraDir  = UKIPath + ".extra.d"
	AddonPath = ExtraDir + "/roothash.addon.efi"
)

// PESigner Authenticode-signs a PE image (a UKI or an addon).
type PESigner interface {
	SignPE(pe []byte) ([]byte, error)
}

// UKIBoot is a [BootFiles] that makes a Unified Kernel Image on a
// systemd-stub and, with an addon stub, a command-line addon carrying
// roothash= (or usrhash=), both signed when Signer is set. Without an addon
// stub the root hash goes into the UKI's own .cmdline, which the stub
// measures into PCR 11 (the route for stub 252, which has no addons).
type UKIBoot struct {
	// Stub is linuxx64.efi.stub; AddonStub is addonx64.efi.stub (254 or
	// later) or nil.
	Stub, AddonStub []byte
	// KernelFile is the bzImage; InitrdFile the initrd (see package
	// initrd). They are read when the UKI is made, and not kept.
	KernelFile, InitrdFile string
	// OSRelease is the .osrel section (os-release(5)); Uname the .uname
	// (the kernel release); SBAT extra .sbat lines. Uname and SBAT may be
	// empty.
	OSRelease []byte
	Uname     string
	SBAT      []byte
	// Cmdline is the UKI's .cmdline (measured into PCR 11).
	Cmdline string
	// Usr puts usrhash= instead of roothash= into the addon (set it with
	// Spec.Usr).
	Usr bool
	// Signer signs the UKI and the addon; nil leaves them unsigned.
	Signer PESigner
	// PCRKey, when set, adds .pcrpkey (its public key, PEM) and .pcrsig
	// (systemd's PCR signature document) to the UKI: signatures of the
	// PCR 11 values of PCRPhases (nil: [uki.ConfidiskPhases]), which a
	// volume sealed to the key's TPM2_PolicyAuthorize unseals with
	// (systemd-stub(7), "TPM2 PCR signatures").
	PCRKey    *rsa.PrivateKey
	PCRPhases []string
	// SecurityVersion, 1..tpm.MaxSecurityVersion, adds the vTPM floor
	// check to every .pcrsig entry (tpm.VersionPolicy): a guest that booted
	// this image raises its floor to it, and images signed with a lower
	// version no longer unseal there. 0 signs plain entries, which
	// systemd's token plugin can use too.
	SecurityVersion int
	// Sysexts are system extension images (NAME.raw, [BuildSysext]) put
	// next to the UKI, in UKIPath.extra.d: systemd-stub passes them to the
	// initrd in /.extra/sysext and measures them into PCR 13.
	Sysexts []string

	built *BootArtifacts // what the last ESPFiles made
}

// BootArtifacts are the signed images [UKIBoot] wrote, for the reference
// values.
type BootArtifacts struct {
	UKI   []byte
	Addon []byte // nil without an addon
	// AddonCmdline is the addon's .cmdline.
	AddonCmdline string
	// Stub and AddonStub identify the stubs.
	Stub, AddonStub uki.Stub
	// Sysexts are the system extensions next to the UKI.
	Sysexts []uki.Sidecar
}

// Check validates the inputs, before anything is written.
func (u *UKIBoot) Check() error {
	st, err := uki.Identify(u.Stub)
	if err != nil {
		return fmt.Errorf("stub: %w", err)
	}
	if st.Kind != uki.KindStub {
		return fmt.Errorf("stub: %s is an addon stub, not linuxx64.efi.stub", st)
	}
	if u.AddonStub != nil {
		at, err := uki.Identify(u.AddonStub)
		if err != nil {
			return fmt.Errorf("addon stub: %w", err)
		}
		if at.Kind != uki.KindAddon {
			return fmt.Errorf("addon stub: %s is not addonx64.efi.stub", at)
		}
		if st.Major < 254 {
			return fmt.Errorf("stub: %s loads no addons (254 or later does): drop the addon stub to put the root hash into the uki's command line", st)
		}
	}
	kernel, err := os.ReadFile(u.KernelFile)
	if err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	if err := uki.CheckKernel(kernel); err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	if fi, err := os.Stat(u.InitrdFile); err != nil {
		return fmt.Errorf("initrd: %w", err)
	} else if fi.Size() == 0 {
		return errors.New("initrd: empty")
	}
	if strings.ContainsAny(u.Cmdline, "\x00\n\r\t") {
		return errors.New("command line: control characters")
	}
	return u.checkSysexts()
}

// checkSysexts checks the system extensions: names systemd-stub takes,
// each once (FAT ignores case), regular files.
func (u *UKIBoot) checkSysexts() error {
	seen := map[string]bool{}
	for _, p := range u.Sysexts {
		name := filepath.Base(p)
		if err := uki.CheckSysextName(name); err != nil {
			return err
		}
		if seen[strings.ToLower(name)] {
			return fmt.Errorf("system extension %s: given twice (the ESP's FAT names ignore case)", name)
		}
		seen[strings.ToLower(name)] = true
		if fi, err := os.Stat(p); err != nil {
			return fmt.Errorf("system extension: %w", err)
		} else if !fi.Mode().IsRegular() {
			return fmt.Errorf("system extension %s: not a regular file", p)
		}
	}
	return nil
}

// ESPFiles implements [BootFiles].
func (u *UKIBoot) ESPFiles(ctx context.Context, rootHash []byte, dir string) ([]ESPFile, error) {
	if err := u.Check(); err != nil {
		return nil, err
	}
	art, err := u.build(rootHash)
	if err != nil {
		return nil, err
	}
	files := []ESPFile{{Path: UKIPath, Source: filepath.Join(dir, "uki.efi")}}
	if err := os.WriteFile(files[0].Source, art.UKI, 0o644); err != nil {
		return nil, err
	}
	if art.Addon != nil {
		f := ESPFile{Path: AddonPath, Source: filepath.Join(dir, "roothash.addon.efi")}
		if err := os.WriteFile(f.Source, art.Addon, 0o644); err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	for _, p := range u.Sysexts {
		files = append(files, ESPFile{Path: ExtraDir + "/" + filepath.Base(p), Source: p})
	}
	u.built = art
	return files, nil
}

// Artifacts returns what the last ESPFiles built, or nil.
func (u *UKIBoot) Artifacts() *BootArtifacts { return u.built }

// RootParameter is the kernel parameter that carries a verity root hash:
// roothash= for a root partition, usrhash= for /usr (systemd-veritysetup-
// generator(8)).
func RootParameter(usr bool, rootHash []byte) string {
	if usr {
		return "usrhash=" + hex.EncodeToString(rootHash)
	}
	return "roothash=" + hex.EncodeToString(rootHash)
}

// build assembles and signs the UKI and the addon.
func (u *UKIBoot) build(rootHash []byte) (*BootArtifacts, error) {
	art := &BootArtifacts{}
	art.Stub, _ = uki.Identify(u.Stub)
	param := RootParameter(u.Usr, rootHash)
	cmdline := u.Cmdline
	if u.AddonStub == nil {
		cmdline = strings.TrimSpace(cmdline + " " + param)
	}
	kernel, err := os.ReadFile(u.KernelFile)
	if err != nil {
		return nil, err
	}
	initrd, err := os.ReadFile(u.InitrdFile)
	if err != nil {
		return nil, err
	}
	parts := []uki.Part{{Name: ".linux", Data: kernel}}
	if len(u.OSRelease) > 0 {
		parts = append(parts, uki.Part{Name: ".osrel", Data: u.OSRelease})
	}
	if cmdline != "" {
		parts = append(parts, uki.Part{Name: ".cmdline", Data: []byte(cmdline)})
	}
	parts = append(parts, uki.Part{Name: ".initrd", Data: initrd})
	if u.Uname != "" {
		parts = append(parts, uki.Part{Name: ".uname", Data: []byte(u.Uname)})
	}
	if len(u.SBAT) > 0 {
		parts = append(parts, uki.Part{Name: ".sbat", Data: u.SBAT})
	}
	if u.PCRKey != nil {
		if parts, err = u.withPCRSignature(parts); err != nil {
			return nil, fmt.Errorf("uki: pcr signature: %w", err)
		}
	}
	for _, p := range u.Sysexts {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("system extension: %w", err)
		}
		art.Sysexts = append(art.Sysexts, uki.Sidecar{Name: filepath.Base(p), Data: b})
	}
	if art.UKI, err = u.assemble(u.Stub, parts); err != nil {
		return nil, fmt.Errorf("uki: %w", err)
	}
	if u.AddonStub != nil {
		art.AddonStub, _ = uki.Identify(u.AddonStub)
		art.AddonCmdline = param
		if art.Addon, err = u.assemble(u.AddonStub, []uki.Part{{Name: ".cmdline", Data: []byte(param)}}); err != nil {
			return nil, fmt.Errorf("addon: %w", err)
		}
	}
	return art, nil
}

// withPCRSignature returns parts with .pcrpkey and .pcrsig: the PCR 11
// values are those of the UKI with .pcrpkey (measured) and without .pcrsig
// (never measured), so a first assembly gives them.
func (u *UKIBoot) withPCRSignature(parts []uki.Part) ([]uki.Part, error) {
	der, err := x509.MarshalPKIXPublicKey(&u.PCRKey.PublicKey)
	if err != nil {
		return nil, err
	}
	parts = append(parts, uki.Part{Name: ".pcrpkey", Data: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})})
	draft, err := uki.Assemble(u.Stub, parts)
	if err != nil {
		return nil, err
	}
	ev, err := uki.KernelBootEvents(draft)
	if err != nil {
		return nil, err
	}
	base := uki.Extend(ev)
	phases := u.PCRPhases
	if phases == nil {
		phases = uki.ConfidiskPhases()
	}
	var values [][]byte
	for _, ph := range phases {
		v := uki.PhaseValue(base, ph)
		values = append(values, v[:])
	}
	doc, err := tpm.SignPCRValues(u.PCRKey, tpm.SHA256, uki.PCRKernelBoot, values, u.SecurityVersion)
	if err != nil {
		return nil, err
	}
	return append(parts, uki.Part{Name: ".pcrsig", Data: doc}), nil
}

// assemble makes and signs one image. It clears parts once they are in
// the image, so that the kernel and the initrd can be collected before the
// signed copy is made.
func (u *UKIBoot) assemble(stub []byte, parts []uki.Part) ([]byte, error) {
	b, err := uki.Assemble(stub, parts)
	clear(parts)
	if err != nil || u.Signer == nil {
		return b, err
	}
	runtime.GC()
	return u.Signer.SignPE(b)
}
