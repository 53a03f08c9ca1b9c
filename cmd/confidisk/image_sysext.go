//go:build !confidisk_guest

package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/confidisk/confidisk/dist"
	"github.com/confidisk/confidisk/image"
)

// imageSysextFlags are the flags of `confidisk image sysext`.
type imageSysextFlags struct {
	confidisk, osID, versionID, seed string
	privateKey, certificate          string
	initrdRelease                    string
	force, asJSON                    bool
}

func newImageSysextCmd() *cobra.Command {
	var o imageSysextFlags
	cmd := &cobra.Command{
		Use:   "sysext [flags] OUT.raw",
		Short: "Write the initrd system extension that brings confidisk to a distribution's UKI",
		Long: `Write a system extension image (systemd-sysext(8)) for the initrd: a
Discoverable Disk Image with an erofs usr partition and its dm-verity
partition (UUIDs from the root hash) holding

  /usr/bin/confidisk                               the guest binary
  /usr/lib/systemd/system/confidisk-boot.service   confidisk boot --no-switch-root
                                                   (required by initrd-root-fs.target)
  /usr/lib/extension-release.d/extension-release.NAME
                                                   ID=, SYSEXT_SCOPE=initrd, ARCHITECTURE=x86-64

NAME is OUT's base name without .raw: systemd-sysext merges the image only
under that name, and only if the initrd's release file has the extension's
ID= (or lists it in ID_LIKE=) and VERSION_ID= (ID=_any: any OS, any
version). --initrd-release checks that against the target initrd's file
before anything is written. Placed next to a UKI (<uki>.efi.extra.d/NAME.raw),
systemd-stub passes it to the initrd as /.extra/sysext/ and measures it into
PCR 13. Merging it there needs systemd 258 or later in the initrd, and its
default image policy for /.extra/sysext (root=signed+absent:usr=signed+absent)
wants a signed verity image: --private-key and --certificate add the
usr-verity-sig partition, the root hash signed as systemd-repart signs it
(PKCS#7, detached, in a JSON object). The initrd must trust the certificate:
in /etc/verity.d/*.crt inside the initrd, or in a kernel keyring dm-verity
checks (docs/distros.md). systemd-dissect OUT shows what it is.

The same inputs and --seed give the same bytes; OUT appears only once
complete.`,
		Example: `  confidisk image sysext --os-id _any confidisk.raw
  confidisk image sysext --os-id fedora --os-version-id 42 --json confidisk.raw
  confidisk image sysext --os-id fedora --os-version-id 43 --initrd-release initrd-release confidisk.raw
  confidisk image sysext --private-key keys/db.key --certificate keys/db.crt confidisk.raw`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runImageSysext(cmd, &o, args[0]) },
	}
	f := cmd.Flags()
	f.StringVar(&o.confidisk, "confidisk", "", "confidisk binary to install as /usr/bin/confidisk (default: confidisk-guest beside this binary, else this binary)")
	f.StringVar(&o.osID, "os-id", "_any", "os-release ID= of the initrd the extension is for (_any: every one)")
	f.StringVar(&o.versionID, "os-version-id", "", "os-release VERSION_ID= it is for (needed with an --os-id other than _any)")
	f.StringVar(&o.initrdRelease, "initrd-release", "", "the target initrd's /etc/initrd-release: refuse an --os-id/--os-version-id its systemd-sysext would not merge (and allow no version for a rolling release)")
	f.StringVar(&o.seed, "seed", "", "identifiers' seed: any string, or hex:<64 hex digits> (default: random; reported with --json)")
	f.StringVar(&o.privateKey, "private-key", "", "RSA key (PEM) that signs the usr root hash: adds the usr-verity-sig partition (needs --certificate)")
	f.StringVar(&o.certificate, "certificate", "", "X.509 certificate (PEM) of --private-key, embedded in the signature; the initrd must trust it (/etc/verity.d or a kernel keyring)")
	f.BoolVar(&o.force, "force", false, "replace OUT if it exists")
	f.BoolVar(&o.asJSON, "json", false, "print what was built as JSON")
	return cmd
}

// runImageSysext checks the flags and writes the extension.
func runImageSysext(cmd *cobra.Command, o *imageSysextFlags, out string) error {
	name, ok := strings.CutSuffix(filepath.Base(out), ".raw")
	if !ok {
		return usageError{fmt.Errorf("%s: the image must be called NAME.raw (systemd-sysext merges it only under that name)", out)}
	}
	if !o.force && pathExists(out) {
		return fmt.Errorf("%s exists (use --force to replace it)", out)
	}
	if (o.privateKey == "") != (o.certificate == "") {
		return usageError{errors.New("--private-key and --certificate go together: the signature embeds the certificate")}
	}
	s := image.Sysext{Name: name, Confidisk: o.confidisk, Unit: dist.BootUnit, OSID: o.osID, VersionID: o.versionID, PrivateKey: o.privateKey, Certificate: o.certificate}
	var err error
	if o.initrdRelease != "" {
		const limit = 1 << 16
		if s.InitrdRelease, err = readFileLimited(o.initrdRelease, limit); err != nil {
			return fmt.Errorf("--initrd-release: %w", err)
		}
		if len(s.InitrdRelease) > limit {
			return fmt.Errorf("--initrd-release %s: more than %d bytes, not a release file", o.initrdRelease, limit)
		}
	}
	if s.Confidisk == "" {
		if s.Confidisk, err = defaultGuestBinary(); err != nil {
			return err
		}
	}
	if s.Seed, err = parseSeed(o.seed); err != nil {
		return err
	}
	res, err := image.BuildSysext(cmd.Context(), s, out)
	if err != nil {
		return err
	}
	report := imageReport{Result: res, Seed: s.Seed.String()}
	if o.asJSON {
		return writeJSON(cmd.OutOrStdout(), report)
	}
	signed := ""
	if o.privateKey != "" {
		signed = ", signed"
	}
	fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: extension %s, usr hash %s%s, seed hex:%s\n", out, name, res.RootHash, signed, report.Seed)
	return nil
}
