package image

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"github.com/confidisk/confidisk/secureboot"
)

// Sysext describes a system extension image for the initrd that carries
// confidisk into a distribution's systemd initrd: systemd-sysext(8), the
// UAPI Extension Image Specification (extension_image.md) and the
// Discoverable Disk Image layout (an erofs /usr partition and its
// dm-verity partition, UUIDs from the root hash).
type Sysext struct {
	// Name is the extension's name: its release file is
	// /usr/lib/extension-release.d/extension-release.<Name>, and
	// systemd-sysext merges it only from a file called <Name>.raw.
	Name string
	// Confidisk is the binary, installed as /usr/bin/confidisk.
	Confidisk string
	// Unit is confidisk-boot.service (package dist), installed in
	// /usr/lib/systemd/system and required by initrd-root-fs.target.
	Unit []byte
	// OSID is the os-release ID= the extension is for; "_any" (systemd
	// 252 and later) matches every OS.
	OSID string
	// VersionID is the os-release VERSION_ID= it is for; required unless
	// OSID is "_any" (where systemd ignores it, so it must be empty) or
	// InitrdRelease has no VERSION_ID (a rolling release).
	VersionID string
	// InitrdRelease, if not nil, is the target initrd's release file
	// (/etc/initrd-release, os-release(5)): the extension is then refused
	// unless systemd-sysext in that initrd would accept its
	// extension-release (see [Sysext.Check]).
	InitrdRelease []byte
	// Seed derives the identifiers (see [Seed]).
	Seed Seed
	// PrivateKey and Certificate, PEM files, sign the /usr root hash: the
	// image then has a usr-verity-sig partition ([VeritySigPartition]),
	// which systemd's image policy "signed" asks for (systemd-sysext(8):
	// root=signed+absent:usr=signed+absent for /.extra/sysext in the
	// initrd). Both or neither; see [LoadSysextSigner].
	PrivateKey, Certificate string
}

// sysextNameRE is the image names confidisk writes: letters, digits and
// "-_.", starting with a letter or digit, a subset of what systemd accepts
// (image_name_is_valid: a file name not starting with "."). The length
// bound, 255 bytes, is checked apart: a counted repetition {0,254} compiles
// into 254 states, which took 0.6 ms of every start of the binary.
var sysextNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// validSysextName reports whether systemd accepts name as an image name.
func validSysextName(name string) bool {
	return len(name) <= 255 && sysextNameRE.MatchString(name)
}

// Check validates s before anything is written: the name, the release
// fields, the binary and, when signing, the key and certificate.
func (s *Sysext) Check() error {
	_, err := s.check()
	return err
}

// check is [Sysext.Check], returning the signer (nil when unsigned).
func (s *Sysext) check() (*secureboot.Signer, error) {
	if err := s.checkRelease(); err != nil {
		return nil, err
	}
	fi, err := os.Stat(s.Confidisk)
	if err != nil {
		return nil, fmt.Errorf("confidisk binary: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("confidisk binary %s: not a regular file", s.Confidisk)
	}
	return LoadSysextSigner(s.PrivateKey, s.Certificate)
}

// checkRelease validates the name and the extension-release fields: what
// systemd-sysext would refuse to merge in the initrd is refused here (see
// [Sysext.matchInitrd]).
func (s *Sysext) checkRelease() error {
	switch {
	case !validSysextName(s.Name):
		return fmt.Errorf("extension name %q: want letters, digits, '-', '_' and '.', starting with a letter or digit, at most 255 bytes", s.Name)
	case s.OSID == "":
		return errors.New("extension OS ID: want the os-release ID= of the initrd, or _any")
	case len(s.Unit) == 0:
		return errors.New("extension: no confidisk-boot.service")
	}
	var host map[string]string
	if s.InitrdRelease != nil {
		var err error
		if host, err = ParseOSRelease(s.InitrdRelease); err != nil {
			return fmt.Errorf("initrd release file: %w", err)
		}
	}
	return s.checkReleaseFields(host)
}

// ExtensionRelease is the extension-release file of s
// (os-release(5), "extension-release"): the OS it is for, the scope (the
// initrd only) and the architecture.
func (s *Sysext) ExtensionRelease() string {
	r := "ID=" + s.OSID + "\n"
	if s.VersionID != "" {
		r += "VERSION_ID=" + s.VersionID + "\n"
	}
	return r + "SYSEXT_SCOPE=initrd\nARCHITECTURE=x86-64\n"
}

// tree writes the extension's /usr into dir: the usr partition's file
// system is mounted at /usr, so its paths leave out the "usr/".
func (s *Sysext) tree(dir string) error {
	units := filepath.Join(dir, "lib/systemd/system")
	for _, d := range []string{"bin", "lib/extension-release.d", "lib/systemd/system/initrd-root-fs.target.requires"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	bin, err := os.ReadFile(s.Confidisk)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{"bin/confidisk", bin, 0o755},
		{"lib/systemd/system/confidisk-boot.service", s.Unit, 0o644},
		{"lib/extension-release.d/extension-release." + s.Name, []byte(s.ExtensionRelease()), 0o644},
	} {
		if err := os.WriteFile(filepath.Join(dir, f.path), f.data, f.mode); err != nil {
			return err
		}
	}
	return os.Symlink("../confidisk-boot.service", filepath.Join(units, "initrd-root-fs.target.requires/confidisk-boot.service"))
}

// BuildSysext writes the extension image to out: the tree made into an
// erofs file system (root-owned, zero timestamps), its dm-verity hash tree,
// both in a GPT as usr and usr-verity partitions, and with s.PrivateKey the
// usr-verity-sig partition after them. The same inputs and seed give the
// same bytes; out appears only once complete.
func BuildSysext(ctx context.Context, s Sysext, out string) (*Result, error) {
	signer, err := s.check()
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp(filepath.Dir(out), "."+filepath.Base(out)+".build-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	tree := filepath.Join(work, "tree")
	if err := s.tree(tree); err != nil {
		return nil, fmt.Errorf("extension tree: %w", err)
	}
	data := filepath.Join(work, "usr.erofs")
	if err := mkfsErofs(ctx, tree, data, s.Seed); err != nil {
		return nil, err
	}
	hash := filepath.Join(work, "usr.verity")
	root, err := formatVerity(ctx, data, hash, s.Seed)
	if err != nil {
		return nil, err
	}
	l := Layout{Data: data, Hash: hash, RootHash: root, Usr: true, Extension: true, Seed: s.Seed, MoveData: true}
	if signer != nil {
		l.VeritySig = filepath.Join(work, "usr.verity-sig")
		if err := writeVeritySig(signer, root, l.VeritySig); err != nil {
			return nil, err
		}
	}
	parts, err := l.Write(out)
	if err != nil {
		return nil, err
	}
	return &Result{RootHash: hex.EncodeToString(root), FSType: "erofs", Partitions: parts}, nil
}
