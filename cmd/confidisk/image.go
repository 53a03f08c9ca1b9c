//go:build !confidisk_guest

package main

import (
	"bufio"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/confidisk/confidisk/image"
	"github.com/confidisk/confidisk/initrd"
	"github.com/confidisk/confidisk/secureboot"
	"github.com/confidisk/confidisk/tpm"
	"github.com/confidisk/confidisk/uki"
)

func newImageCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Build bootable confidential-VM disks, their Secure Boot keys and reference values",
	}
	cmd.AddCommand(newImageBuildCmd(), newImageKeysCmd(), newImageInspectCmd(), newImageMergePoliciesCmd(), newImageEncryptCmd(), newImageSysextCmd())
	return cmd
}

func newImageKeysCmd() *cobra.Command {
	var owner, name, authTime string
	var years int
	cmd := &cobra.Command{
		Use:   "keys [flags] DIR",
		Short: "Make Secure Boot PK, KEK and db keys with their signature lists and signed variable updates",
		Long: `Make a Secure Boot key hierarchy in DIR (created if missing; existing key
files are never overwritten):

  PK.key KEK.key db.key     RSA-2048 private keys (PKCS#8 PEM, mode 0600)
  PK.crt KEK.crt db.crt     self-signed X.509 certificates (PEM)
  PK.esl KEK.esl db.esl     EFI_SIGNATURE_LISTs (UEFI 2.10, 32.4.1): what
                            efi-updatevar, virt-fw-vars or a cloud's image
                            API (e.g. GCE --signature-database-file, AWS
                            uefi-data) take
  PK.auth KEK.auth db.auth  EFI_VARIABLE_AUTHENTICATION_2 updates (UEFI 8.2.2):
                            PK signed by PK, KEK by PK, db by KEK, for
                            firmware in setup mode (efi-updatevar -f)
  dbx.esl                   a placeholder dbx (forbids nothing)
  owner.txt                 the signature owner GUID

The db key signs UKIs and addons (confidisk image build --keys DIR); keep it
offline. PK and KEK are needed only to change db.`,
		Example: `  confidisk image keys --name "Example Corp" keys/`,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runImageKeys(cmd, args[0], owner, name, authTime, years)
		},
	}
	f := cmd.Flags()
	f.StringVar(&owner, "owner", "", "signature owner GUID (default: random)")
	f.StringVar(&name, "name", "confidisk", "common name prefix of the certificates (\"NAME PK\", \"NAME KEK\", \"NAME db\")")
	f.IntVar(&years, "years", 10, "certificate validity in years")
	f.StringVar(&authTime, "auth-time", "", "time stamp of the .auth updates, RFC 3339 (default: now); firmware refuses an update older than the variable's")
	return cmd
}

func runImageKeys(cmd *cobra.Command, dir, ownerStr, name, authTimeStr string, years int) error {
	owner, err := ownerGUID(ownerStr)
	if err != nil {
		return err
	}
	authTime := time.Now().UTC().Truncate(time.Second)
	if authTimeStr != "" {
		if authTime, err = time.Parse(time.RFC3339, authTimeStr); err != nil {
			return usageError{fmt.Errorf("--auth-time: %w", err)}
		}
	}
	if years < 1 || years > 100 {
		return usageError{fmt.Errorf("--years %d: want 1 to 100", years)}
	}
	notBefore := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	ks, err := secureboot.GenerateKeys(rand.Reader, owner, name, notBefore, notBefore.AddDate(years, 0, 0))
	if err != nil {
		return err
	}
	if err := writeKeyDir(dir, ks, authTime); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "wrote Secure Boot keys to %s (owner %s); keep db.key, KEK.key and PK.key offline\n", dir, owner)
	return nil
}

// writeKeyDir writes ks into dir. A new dir is made under a temporary name
// and renamed when complete, so that an interrupted run leaves no half key
// set; into an existing dir each file is written atomically and none is
// overwritten.
func writeKeyDir(dir string, ks *secureboot.KeySet, authTime time.Time) error {
	if _, err := os.Stat(dir); err == nil {
		return ks.WriteDir(dir, authTime)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(filepath.Clean(dir)), "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := ks.WriteDir(tmp, authTime); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

func ownerGUID(s string) (secureboot.GUID, error) {
	if s != "" {
		g, err := secureboot.ParseGUID(s)
		if err != nil {
			return g, usageError{fmt.Errorf("--owner: %w", err)}
		}
		return g, nil
	}
	var g secureboot.GUID
	if _, err := rand.Read(g[:]); err != nil {
		return g, err
	}
	g[7] = g[7]&0x0f | 0x40 // version 4 (mixed-endian EFI_GUID: byte 7 holds the high bits of Data3)
	g[8] = g[8]&0x3f | 0x80
	return g, nil
}

// imageBuildFlags are the inputs of `confidisk image build`.
type imageBuildFlags struct {
	root, fsType, rootSize                                  string
	kernel, initrdFile, stub, addonStub, osRelease, cmdline string
	uname, sbat, pcrKey                                     string
	pcrPhases, sysexts                                      []string
	securityVersion                                         int
	keys, dbx, policy, policyPCRs, reference, seed          string
	espSize, stateSize, stateLabel                          string
	unsigned, force, asJSON, usrOnly                        bool
	initrd                                                  initrdFlags
}

func newImageBuildCmd() *cobra.Command {
	var o imageBuildFlags
	cmd := &cobra.Command{
		Use:   "build --root SRC --kernel VMLINUZ --stub STUB [--addon-stub STUB] --keys DIR [flags] OUT",
		Short: "Write a bootable disk image: DPS GPT, verity root, signed UKI and roothash= addon, blank state",
		Long:  imageBuildLong,
		Example: `  confidisk image keys keys/
  confidisk image build --root rootfs/ --fs erofs \
      --kernel vmlinuz --modules-dir lib/modules/6.12.57+deb13-amd64 \
      --stub /usr/lib/systemd/boot/efi/linuxx64.efi.stub \
      --addon-stub /usr/lib/systemd/boot/efi/addonx64.efi.stub \
      --keys keys/ --cmdline "console=ttyS0 confidisk.broker=https://10.0.0.2:8443" \
      --state-size 1G --policy policy.json disk.img`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runImageBuild(cmd, &o, args[0]) },
	}
	f := cmd.Flags()
	f.StringVar(&o.root, "root", "", "root file system: a directory, a tar archive (.tar, .tar.gz) or an ext4/erofs/squashfs image (required)")
	f.StringVar(&o.fsType, "fs", "erofs", "file system made from a directory or archive: erofs (byte-reproducible) or ext4")
	f.StringVar(&o.rootSize, "root-size", "", "ext4 size, e.g. 2G (default: from the contents)")
	f.StringVar(&o.kernel, "kernel", "", "the kernel, an x86 bzImage with an EFI stub (required)")
	f.StringVar(&o.initrdFile, "initrd", "", "a prebuilt initrd (default: build one like `confidisk initrd build` from --modules-dir)")
	f.StringVar(&o.stub, "stub", "", "systemd-stub, linuxx64.efi.stub (252, 254 or 257; required)")
	f.StringVar(&o.addonStub, "addon-stub", "", "systemd-addon, addonx64.efi.stub (254 or later): roothash= goes into a signed addon; without it into the UKI's .cmdline")
	f.StringVar(&o.osRelease, "os-release", "", "the UKI's .osrel (default: the root directory's etc/os-release or usr/lib/os-release, else ID=confidisk)")
	f.StringVar(&o.cmdline, "cmdline", "console=ttyS0", "the kernel command line embedded in the UKI (measured into PCR 11)")
	f.StringVar(&o.uname, "uname", "", "the UKI's .uname, the kernel release (default: the base name of --modules-dir)")
	f.StringVar(&o.sbat, "sbat", "", "file of SBAT lines merged into the stub's .sbat")
	f.StringArrayVar(&o.sysexts, "sysext", nil, "system extension NAME.raw (confidisk image sysext) next to the UKI, in \\EFI\\BOOT\\BOOTX64.EFI.extra.d\\: systemd-stub passes it to the initrd as /.extra/sysext/ and measures it into PCR 13, which the reference values predict (repeatable)")
	f.StringVar(&o.pcrKey, "pcr-private-key", "", "RSA key (PEM) that signs the UKI's PCR 11 values: adds .pcrpkey and .pcrsig (systemd-measure sign's format) for signed PCR policies")
	f.StringSliceVar(&o.pcrPhases, "pcr-phases", uki.ConfidiskPhases(), "boot phases whose PCR 11 values --pcr-private-key signs (systemd-pcrphase words joined by ':'; the empty phase is the stub's value, where confidisk boot unseals)")
	f.IntVar(&o.securityVersion, "security-version", 0, fmt.Sprintf("security version 1..%d signed into every .pcrsig entry (needs --pcr-private-key): a guest that boots this image raises a floor in its vTPM, and images with a lower version no longer unseal there (0: none; systemd's token plugin cannot use versioned entries)", tpm.MaxSecurityVersion))
	f.StringVar(&o.keys, "keys", "", "Secure Boot key directory (confidisk image keys): db signs the UKI and addon; PK, KEK, db and dbx give PCR 7")
	f.StringVar(&o.dbx, "dbx", "", "the dbx the firmware will hold, an EFI_SIGNATURE_LIST file, for PCR 7 (default: KEYS/dbx.esl)")
	f.BoolVar(&o.unsigned, "unsigned", false, "build without --keys: nothing is signed and no reference values are written (a Secure Boot firmware refuses the disk)")
	f.StringVar(&o.policy, "policy", "", "write the broker policy (confidisk serve --policy) for this image to this new file")
	f.StringVar(&o.policyPCRs, "policy-pcrs", "4,7,11,12", "PCRs the policy pins (of 4, 7, 11, 12, 13)")
	f.StringVar(&o.reference, "reference", "", "write the predicted measurements (every event, JSON) to this new file")
	f.StringVar(&o.seed, "seed", "", "identifiers' seed: any string, or hex:<64 hex digits> (default: random; reported with --json)")
	f.StringVar(&o.espSize, "esp-size", "64M", "ESP size (at least 64M)")
	f.StringVar(&o.stateSize, "state-size", "256M", "size of the blank state partition")
	f.StringVar(&o.stateLabel, "state-label", "state", "GPT label of the state partition")
	f.BoolVar(&o.usrOnly, "usr-only", false, "--root is a /usr tree: lay the verity pair out as usr partitions (usrhash= instead of roothash=); the root file system is made on the state volume by the first boot (docs/boot.md, \"usrhash=\")")
	f.BoolVar(&o.force, "force", false, "replace OUT if it exists")
	f.BoolVar(&o.asJSON, "json", false, "print what was built as JSON")
	o.initrd.register(cmd)
	return cmd
}

const imageBuildLong = `Write a raw disk image for a confidential VM, rootless (no loop device, mount
or root needed), laid out by the Discoverable Partitions Specification:

  1  ESP (FAT32)  \EFI\BOOT\BOOTX64.EFI: a UKI on systemd-stub with .linux,
                  .osrel, .cmdline, .initrd, .uname; and, with --addon-stub,
                  \EFI\BOOT\BOOTX64.EFI.extra.d\roothash.addon.efi carrying
                  roothash=<hex>; both Authenticode-signed with KEYS/db
  2  root         the root file system (read-only flag, UUID from the root hash)
  3  root-verity  its dm-verity hash tree (UUID from the root hash)
  4  state        blank: confidisk boot self-encrypts it on first boot

With --usr-only, --root is a /usr tree and partitions 2 and 3 are usr and
usr-verity (UUIDs from the usr hash), the addon carries usrhash=: the first
boot makes the root file system inside the self-encrypted state volume and
mounts the verity /usr on it.

With --policy, it also writes the reference values a good boot measures,
computed from the artefacts (never read from a guest) as a broker policy:
PCR 4 (firmware: the Authenticode digests of the UKI and the addon), PCR 7
(Secure Boot on, the enrolled PK/KEK/db/dbx and the db authority), PCR 11
(systemd-stub: the UKI's sections in the stub release's order), PCR 12 (the
addon's command line). Enroll KEYS/*.esl (or *.auth) in the firmware; see
docs/image.md for what the values do not cover (firmware PCRs 0-3, the
SEV-SNP/TDX launch measurement).

The same inputs and --seed give the same bytes (with --fs erofs). OUT and the
policy appear only once complete.`

// runImageBuild checks every input, builds the disk, and writes the policy.
func runImageBuild(cmd *cobra.Command, o *imageBuildFlags, out string) error {
	start := time.Now()
	// The heap holds little but the UKI's copies (kernel and initrd, tens of
	// MiB; the root file system streams): collect at half the default
	// growth so that the peak RSS stays near what is live.
	debug.SetGCPercent(50)
	in, err := o.check(cmd, out)
	defer in.cleanup()
	if err != nil {
		return err
	}
	in.spec.Progress = func(step string) {
		fmt.Fprintf(cmd.ErrOrStderr(), "image build: %5.1fs %s\n", time.Since(start).Seconds(), step)
	}
	res, err := image.Build(cmd.Context(), in.spec, out)
	if err != nil {
		return err
	}
	report := imageReport{Result: res, Seed: in.spec.Seed.String()}
	if in.sb != nil {
		in.spec.Progress("reference values")
		if report.PCRs, err = o.writeReferences(in, res); err != nil {
			os.Remove(out)
			return err
		}
	}
	if o.asJSON {
		return writeJSON(cmd.OutOrStdout(), report)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: root hash %s (%s), seed hex:%s\n", out, res.RootHash, res.FSType, report.Seed)
	return nil
}

// imageReport is `image build --json`.
type imageReport struct {
	*image.Result
	Seed string         `json:"seed"`
	PCRs map[int]string `json:"pcrs,omitempty"`
}

// buildInputs are the checked inputs of a build.
type buildInputs struct {
	spec image.Spec
	boot *image.UKIBoot
	// sb is the firmware's Secure Boot state for PCR 7, nil without keys.
	sb   *secureboot.SecureBootVars
	pcrs []int
	// cleanup removes the initrd check built.
	cleanup func()
}

// check validates the flags and reads the inputs before anything is
// written.
func (o *imageBuildFlags) check(cmd *cobra.Command, out string) (*buildInputs, error) {
	in := &buildInputs{cleanup: func() {}}
	var err error
	if err = o.checkPaths(out); err != nil {
		return in, err
	}
	if err = o.checkInitrdFlags(cmd); err != nil {
		return in, err
	}
	if in.pcrs, err = o.pcrList(); err != nil {
		return in, err
	}
	if in.spec, err = o.diskSpec(); err != nil {
		return in, err
	}
	if in.boot, err = o.uki(); err != nil {
		return in, err
	}
	if o.pcrKey != "" {
		if in.boot.PCRKey, err = loadRSAKey(o.pcrKey); err != nil {
			return in, fmt.Errorf("--pcr-private-key: %w", err)
		}
		in.boot.PCRPhases = o.pcrPhases
	}
	if o.securityVersion != 0 {
		if o.pcrKey == "" {
			return in, errors.New("--security-version needs --pcr-private-key (the version is part of the signed pcr policies)")
		}
		if o.securityVersion < 1 || o.securityVersion > tpm.MaxSecurityVersion {
			return in, fmt.Errorf("--security-version %d is outside 1..%d", o.securityVersion, tpm.MaxSecurityVersion)
		}
		in.boot.SecurityVersion = o.securityVersion
	}
	if o.keys != "" {
		keys, err := secureboot.LoadKeySet(o.keys)
		if err != nil {
			return in, err
		}
		in.boot.Signer = keys.DB
		if in.sb, err = o.secureBootVars(keys); err != nil {
			return in, err
		}
	}
	if in.boot.InitrdFile == "" {
		if in.boot.InitrdFile, err = o.buildInitrd(cmd); err != nil {
			return in, err
		}
		f := in.boot.InitrdFile
		in.cleanup = func() { os.Remove(f) }
	}
	if err := in.boot.Check(); err != nil {
		return in, err
	}
	in.spec.Boot = in.boot
	return in, nil
}

// loadRSAKey reads an RSA private key (PEM, PKCS#1 or PKCS#8).
func loadRSAKey(path string) (*rsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := secureboot.ParsePrivateKeyPEM(b)
	if err != nil {
		return nil, err
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: a %T, want an RSA key (TPM2 signed policies here are RSA)", path, k)
	}
	return rk, nil
}

// secureBootVars is what the firmware will hold once keys and the dbx
// (--dbx, default KEYS/dbx.esl) are enrolled.
func (o *imageBuildFlags) secureBootVars(keys *secureboot.KeySet) (*secureboot.SecureBootVars, error) {
	dbxPath := o.dbx
	if dbxPath == "" {
		dbxPath = filepath.Join(o.keys, "dbx.esl")
	}
	dbx, err := os.ReadFile(dbxPath)
	if err != nil {
		return nil, fmt.Errorf("dbx: %w", err)
	}
	if _, err := secureboot.ParseSignatureLists(dbx); err != nil {
		return nil, fmt.Errorf("dbx %s: %w", dbxPath, err)
	}
	sb, err := keys.SecureBootVars(dbx)
	if err != nil {
		return nil, err
	}
	return &sb, nil
}

// checkPaths checks the required flags and that no output exists.
// checkInitrdFlags refuses flags of confidisk's own initrd next to a
// prebuilt --initrd, which they would not change.
func (o *imageBuildFlags) checkInitrdFlags(cmd *cobra.Command) error {
	if o.initrdFile == "" {
		return nil
	}
	for _, f := range []string{"file", "module", "module-dir", "tool", "boot-arg", "busybox", "compress"} {
		if cmd.Flags().Changed(f) {
			return usageError{fmt.Errorf("--%s shapes the initrd image build makes: not with a prebuilt --initrd (add files to that initrd instead)", f)}
		}
	}
	return nil
}

func (o *imageBuildFlags) checkPaths(out string) error {
	if o.root == "" || o.kernel == "" || o.stub == "" {
		return usageError{errors.New("--root, --kernel and --stub are required")}
	}
	if o.keys == "" && !o.unsigned {
		return usageError{errors.New("--keys DIR is required (confidisk image keys), or --unsigned")}
	}
	if o.keys == "" && (o.policy != "" || o.reference != "") {
		return usageError{errors.New("--policy and --reference need --keys: the values assume Secure Boot with those keys")}
	}
	for _, p := range []string{o.policy, o.reference} {
		if p != "" && pathExists(p) {
			return fmt.Errorf("%s exists: refusing to overwrite it", p)
		}
	}
	if !o.force && pathExists(out) {
		return fmt.Errorf("%s exists (use --force to replace it)", out)
	}
	return nil
}

// buildInitrd makes the initrd like confidisk initrd build, into a
// temporary file whose path it returns.
func (o *imageBuildFlags) buildInitrd(cmd *cobra.Command) (string, error) {
	ispec, err := o.initrd.spec()
	if err != nil {
		return "", fmt.Errorf("initrd: %w", err)
	}
	cleanup, err := decompressInto(&ispec)
	if err != nil {
		return "", err
	}
	defer cleanup()
	f, err := os.CreateTemp("", "confidisk-initrd-*")
	if err != nil {
		return "", err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	err = initrd.Build(cmd.Context(), ispec, w)
	if err = errors.Join(err, w.Flush(), f.Close()); err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("initrd: %w", err)
	}
	return f.Name(), nil
}

func pathExists(p string) bool { _, err := os.Lstat(p); return err == nil }

// diskSpec is the disk part of the flags.
func (o *imageBuildFlags) diskSpec() (image.Spec, error) {
	var s image.Spec
	var err error
	if o.fsType != "erofs" && o.fsType != "ext4" {
		return s, usageError{fmt.Errorf("--fs %q: want erofs or ext4", o.fsType)}
	}
	s.Root = image.RootFS{Source: o.root, Type: o.fsType}
	if o.rootSize != "" {
		if s.Root.Size, err = parseSize("--root-size", o.rootSize); err != nil {
			return s, err
		}
	}
	if s.ESPSize, err = parseSize("--esp-size", o.espSize); err != nil {
		return s, err
	}
	if s.StateSize, err = parseSize("--state-size", o.stateSize); err != nil {
		return s, err
	}
	s.StateLabel = o.stateLabel
	s.Usr = o.usrOnly
	s.Seed, err = parseSeed(o.seed)
	return s, err
}

// uki reads the UKI's inputs.
func (o *imageBuildFlags) uki() (*image.UKIBoot, error) {
	u := &image.UKIBoot{Cmdline: o.cmdline, Uname: o.uname, KernelFile: o.kernel, InitrdFile: o.initrdFile, Usr: o.usrOnly, Sysexts: o.sysexts}
	read := func(flag, path string) ([]byte, error) {
		if path == "" {
			return nil, nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", flag, err)
		}
		return b, nil
	}
	var err error
	for _, in := range []struct {
		flag, path string
		dst        *[]byte
	}{{"--stub", o.stub, &u.Stub}, {"--addon-stub", o.addonStub, &u.AddonStub},
		{"--sbat", o.sbat, &u.SBAT}, {"--os-release", o.osRelease, &u.OSRelease}} {
		if *in.dst, err = read(in.flag, in.path); err != nil {
			return nil, err
		}
	}
	if u.OSRelease == nil {
		u.OSRelease = defaultOSRelease(o.root)
	}
	if u.Uname == "" && o.initrd.modulesDir != "" {
		u.Uname = filepath.Base(filepath.Clean(o.initrd.modulesDir))
	}
	if u.InitrdFile == "" && o.initrd.modulesDir == "" {
		return nil, usageError{errors.New("give --initrd FILE or --modules-dir DIR to build one")}
	}
	return u, nil
}

// defaultOSRelease is the root directory's os-release, or a minimal one.
func defaultOSRelease(root string) []byte {
	for _, p := range []string{"etc/os-release", "usr/lib/os-release"} {
		if b, err := os.ReadFile(filepath.Join(root, p)); err == nil {
			return b
		}
	}
	return []byte("ID=confidisk\nNAME=\"confidisk image\"\n")
}

// pcrList parses --policy-pcrs.
func (o *imageBuildFlags) pcrList() ([]int, error) {
	var pcrs []int
	for _, f := range strings.FieldsFunc(o.policyPCRs, func(r rune) bool { return r == ',' || r == '+' }) {
		n, err := strconv.Atoi(f)
		if err != nil || (n != 4 && n != 7 && n != 11 && n != 12 && n != 13) {
			return nil, usageError{fmt.Errorf("--policy-pcrs: %q is not one of 4, 7, 11, 12, 13", f)}
		}
		pcrs = append(pcrs, n)
	}
	if len(pcrs) == 0 {
		return nil, usageError{errors.New("--policy-pcrs: no pcr")}
	}
	return pcrs, nil
}

// writeReferences predicts the boot's measurements and writes the policy
// and the reference document.
func (o *imageBuildFlags) writeReferences(in *buildInputs, res *image.Result) (map[int]string, error) {
	root, _ := hex.DecodeString(res.RootHash)
	ref, err := image.Predict(in.boot.Artifacts(), root, *in.sb)
	if err != nil {
		return nil, err
	}
	pol, err := ref.Policy(in.pcrs)
	if err != nil {
		return nil, err
	}
	for _, w := range []struct {
		path string
		v    any
	}{{o.policy, pol}, {o.reference, ref}} {
		if w.path == "" {
			continue
		}
		b, err := json.MarshalIndent(w.v, "", "  ")
		if err != nil {
			return nil, err
		}
		if err := writeNewFile(w.path, append(b, '\n')); err != nil {
			return nil, err
		}
	}
	return ref.PCRs, nil
}

// writeNewFile writes data to a path that must not exist, atomically.
func writeNewFile(path string, data []byte) error {
	if pathExists(path) {
		return fmt.Errorf("%s exists: refusing to overwrite it", path)
	}
	return writeAtomic(path, 0o644, func(f *os.File) error { _, err := f.Write(data); return err })
}

// parseSeed reads --seed: "" is random, hex:<64 hex> the seed itself,
// anything else is hashed (image.NewSeed).
func parseSeed(s string) (image.Seed, error) {
	switch {
	case s == "":
		return image.RandomSeed()
	case strings.HasPrefix(s, "hex:"):
		b, err := hex.DecodeString(s[4:])
		if err != nil || len(b) != 32 {
			return image.Seed{}, usageError{errors.New("--seed hex:…: want 64 hex digits")}
		}
		return image.Seed(b), nil
	}
	return image.NewSeed(s), nil
}

// parseSize reads a size like 512M, 2G or 1048576 (bytes; K, M, G, T are
// binary multiples, as in mkfs).
func parseSize(flag, s string) (int64, error) {
	mult := int64(1)
	num := strings.TrimSuffix(strings.ToUpper(s), "B")
	num = strings.TrimSuffix(num, "I")
	if n := len(num); n > 0 {
		if i := strings.IndexByte("KMGT", num[n-1]); i >= 0 {
			mult = int64(1) << (10 * (i + 1))
			num = num[:n-1]
		}
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v <= 0 || v > (1<<50)/mult {
		return 0, usageError{fmt.Errorf("%s %q: want a size like 512M or 2G", flag, s)}
	}
	return v * mult, nil
}
