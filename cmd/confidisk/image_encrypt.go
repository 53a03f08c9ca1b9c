//go:build !confidisk_guest

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/google/go-tpm/tpm2"

	"github.com/confidisk/confidisk/broker/api"
	"github.com/confidisk/confidisk/enroll"
	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/preencrypt"
	"github.com/confidisk/confidisk/probe"
	"github.com/confidisk/confidisk/provision"
	"github.com/confidisk/confidisk/recovery"
	"github.com/confidisk/confidisk/tpm"
)

// encryptFlags are image encrypt's flags.
type encryptFlags struct {
	size, dataFile, rw, label string
	integ                     string
	keyFile, recoveryKey      string
	srkFile, srkPCRs          string
	brokerPut, batch, asJSON  bool
	broker                    brokerFlags
	require                   requireFlags
}

func newImageEncryptCmd() *cobra.Command {
	f := &encryptFlags{}
	cmd := &cobra.Command{
		Use:   "encrypt OUTPUT --size SIZE [--data FS.img] (--key-file FILE | --recovery-key KEY.pub) [--broker-put …]",
		Short: "Write a pre-encrypted state volume offline, its key at the broker or sealed to a vTPM",
		Long: `Writes a whole state volume for a confidisk guest, as trusted infrastructure
pre-encrypts it (docs/boot.md, "Pre-encrypted state volumes"): LUKS2 with
aes-xts-plain64 and hmac-sha256 integrity (--integrity hmac-sha512, or aead for
aes-gcm-random), the
dm-integrity superblock, journal and every sector with its tag, all in userspace
(no root, no device-mapper), and the provisioning record a first boot would have
written, authenticated under the volume key, so the guest's checks apply
unchanged.

--data FS.img is the state file system (ext4; in overlay mode the files under
overlay/upper/ appear in the guest's root); without it the guest's first boot
makes the file system. Keyslot 0 is the operator's way back in: the passphrase
in --key-file, or a random one sealed to the operator's recovery key
(--recovery-key, opened with confidisk luks recover).

With --broker-put the volume is registered at the broker (operator certificate)
and its key stored there, released only to a guest whose evidence satisfies the
broker's policy and the --require-* measurements (for example the image's PCRs
and the instance's attestation key). The guest boots it with
confidisk.state-key=broker, then enrolls a vTPM keyslot, so later boots need the
broker only as their freshness anchor.

With --tpm2-device-key SRK (the instance vTPM's storage root key, from
confidisk tpm srk or systemd-analyze srk on the instance) a keyslot is sealed
offline to that vTPM, as systemd-repart --tpm2-device-key= does: to the PCR
values --tpm2-pcrs gives (PCR:BANK=HEX, for example the image's reference
values) and to PCR 15 at zero. Only that vTPM unseals it; the guest boots it with
confidisk.state-key=srk, and systemd-cryptsetup (systemd 255 or later) opens it
too.

OUTPUT is an image file (written under a temporary name and renamed when
complete, after the broker has the key: nothing appears under OUTPUT before
that) or a block device (written in place, the dm-integrity superblock last).`,
		Example: `  # the state file system, prepared on the build host
  mkfs.ext4 -q -d state-tree/ state-fs.img 256M
  confidisk image encrypt state.img --size 1G --data state-fs.img \
      --recovery-key operator.pub --broker-put --broker-url https://broker:8443 \
      --require-pcr 7=3d45… --require-ak 9f2c…
  # sealed to one instance's vTPM instead
  confidisk tpm srk -o srk.tpm2b_public          # on (or for) the instance
  confidisk image encrypt state.img --size 1G --recovery-key operator.pub \
      --tpm2-device-key srk.tpm2b_public --tpm2-pcrs 7:sha256=3d45…`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runImageEncrypt(cmd, args[0], f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.size, "size", "", "size of the volume (e.g. 1G; default: that of the existing OUTPUT)")
	fl.StringVar(&f.dataFile, "data", "", "the state file system image (ext4) to encrypt into the volume")
	fl.StringVar(&f.rw, "rw", "overlay", "the guest's read-write mode the volume is for: overlay, copy (needs --data holding root/) or none")
	fl.StringVar(&f.integ, "integrity", "hmac-sha256", "hmac-sha256, hmac-sha512 or aead (aes-gcm-random); the guest's confidisk.integrity= must say the same")
	fl.StringVar(&f.label, "label", "state", "LUKS2 label (the guest finds the partition by its GPT label, confidisk.state=)")
	fl.StringVarP(&f.keyFile, "key-file", "d", "", "the passphrase of keyslot 0, which the operator keeps")
	fl.StringVar(&f.recoveryKey, "recovery-key", "", "the operator's recovery public key: keyslot 0 gets a random passphrase sealed to it")
	fl.BoolVarP(&f.batch, "batch-mode", "q", false, "overwrite an OUTPUT that holds a file system or volume")
	fl.BoolVar(&f.asJSON, "json", false, "print what was written as JSON")
	fl.StringVar(&f.srkFile, "tpm2-device-key", "", "seal a keyslot offline to the vTPM whose SRK public key (TPM2B_PUBLIC or PEM) this file holds")
	fl.StringVar(&f.srkPCRs, "tpm2-pcrs", "", "with --tpm2-device-key: the PCRs and their values to seal to, PCR:BANK=HEX joined by + (PCR 15 at zero is added)")
	fl.BoolVar(&f.brokerPut, "broker-put", false, "register the volume and store its key at the broker (operator)")
	fl.StringVar(&f.broker.url, "broker-url", "https://127.0.0.1:8443", "with --broker-put: the broker's address")
	fl.StringVar(&f.broker.data, "broker-data", "", "with --broker-put: the broker's data directory, for its certificates (default: that of confidisk serve)")
	fl.StringVar(&f.broker.ca, "broker-ca", "", "with --broker-put: PEM certificate(s) the broker's certificate must chain to (default DATA/tls/server.crt)")
	fl.StringVar(&f.broker.cert, "broker-cert", "", "with --broker-put: operator client certificate (default DATA/tls/operator.crt)")
	fl.StringVar(&f.broker.key, "broker-key", "", "with --broker-put: operator client key (default DATA/tls/operator.key)")
	f.require.register(fl)
	cmd.MarkFlagsMutuallyExclusive("key-file", "recovery-key")
	return cmd
}

// encryptResult is what image encrypt wrote (--json).
type encryptResult struct {
	Output        string `json:"output"`
	UUID          string `json:"uuid"`
	KeyID         string `json:"key_id"`
	Size          int64  `json:"size"`
	ProvidedBytes int64  `json:"provided_bytes"`
	DataBytes     int64  `json:"data_bytes"`
	Filesystem    bool   `json:"filesystem"`
	Broker        bool   `json:"broker"`
	SRKSealed     bool   `json:"srk_sealed"`
}

func runImageEncrypt(cmd *cobra.Command, out string, f *encryptFlags) error {
	in, err := f.inputs(cmd, out)
	if err != nil {
		return err
	}
	defer in.close()
	vol, err := f.prepare(in)
	if err != nil {
		return fmt.Errorf("encrypt %s: %w", out, err)
	}
	defer clear(vol.vk)
	res := &encryptResult{Output: out, UUID: vol.h.UUID, KeyID: vol.keyID, Size: in.size,
		ProvidedBytes: vol.plan.ProvidedBytes(), DataBytes: in.dataSize, Filesystem: in.hasFS, Broker: f.brokerPut, SRKSealed: in.seal != nil}
	if f.brokerPut {
		if err := f.putKey(cmd, vol); err != nil {
			return err
		}
	}
	if err := in.write(vol); err != nil {
		return fmt.Errorf("encrypt %s: %w", out, err)
	}
	if f.asJSON {
		return writeJSON(cmd.OutOrStdout(), res)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "pre-encrypted state volume %s written to %s (key id %.16s…)\n", res.UUID, out, res.KeyID)
	if f.brokerPut {
		fmt.Fprintf(cmd.OutOrStdout(), "its key is at the broker: boot it with confidisk.state-key=broker\n")
	}
	if in.seal != nil {
		fmt.Fprintf(cmd.OutOrStdout(), "a keyslot is sealed to the vTPM of %s: boot it with confidisk.state-key=srk\n", f.srkFile)
	}
	return nil
}

// encryptInputs are the checked inputs of image encrypt.
type encryptInputs struct {
	out      string
	dev      *os.File // the block device, or the temporary file renamed to out
	tmp      string   // the temporary file's name ("" for a block device)
	size     int64
	data     *os.File
	dataSize int64
	hasFS    bool
	pass     []byte
	uuid     string // with recovery: the UUID the token is bound to
	recovery *recovery.Token
	seal     *srkSeal // with --tpm2-device-key
	cmd      *cobra.Command
}

func (in *encryptInputs) close() {
	if in.data != nil {
		in.data.Close()
	}
	if in.dev != nil {
		in.dev.Close()
	}
	if in.tmp != "" {
		os.Remove(in.tmp)
	}
	clear(in.pass)
}

// inputs checks the flags, the data and the output, and opens them.
func (f *encryptFlags) inputs(cmd *cobra.Command, out string) (_ *encryptInputs, err error) {
	if f.keyFile == "" && f.recoveryKey == "" {
		return nil, usageError{errors.New("give --key-file (the passphrase of keyslot 0) or --recovery-key (a random one sealed to the operator's key)")}
	}
	if !f.brokerPut && f.require.set() {
		return nil, usageError{errors.New("--require-* flags need --broker-put (the broker checks them before it releases the key)")}
	}
	if (f.srkFile == "") != (f.srkPCRs == "") {
		return nil, usageError{errors.New("--tpm2-device-key and --tpm2-pcrs go together (the vTPM is not here to read its PCRs from)")}
	}
	if !f.brokerPut && f.srkFile == "" {
		return nil, usageError{errors.New("nothing would release the key: give --broker-put or --tpm2-device-key")}
	}
	in := &encryptInputs{out: out, cmd: cmd}
	defer func() {
		if err != nil {
			in.close()
		}
	}()
	if f.dataFile != "" {
		if in.data, in.dataSize, err = openSized(f.dataFile, os.O_RDONLY); err != nil {
			return nil, fmt.Errorf("--data: %w", err)
		}
		what, err := probe.Identify(in.data)
		if err != nil {
			return nil, fmt.Errorf("--data %s: %w", f.dataFile, err)
		}
		if probe.MountType(what) != "ext4" {
			return nil, fmt.Errorf("--data %s holds %q, not an ext4 file system: the guest mounts its state volume as ext4", f.dataFile, orNothing(what))
		}
		in.hasFS = true
	}
	if f.srkFile != "" {
		if in.seal, err = srkSealOptions(f.srkFile, f.srkPCRs); err != nil {
			return nil, err
		}
	}
	if err := in.openOutput(f); err != nil {
		return nil, err
	}
	if f.keyFile != "" {
		in.pass, err = readKey(cmd, f.keyFile, "", false)
	} else {
		in.pass, err = in.recoveryPassphrase(f.recoveryKey)
	}
	return in, err
}

func orNothing(s string) string {
	if s == "" {
		return "no recognisable signature"
	}
	return s
}

// openOutput opens out: a block device in place (its size; --size must
// agree), else a temporary file beside it of --size bytes (or out's size).
func (in *encryptInputs) openOutput(f *encryptFlags) error {
	var want int64
	if f.size != "" {
		var err error
		if want, err = parseSize("--size", f.size); err != nil {
			return err
		}
	}
	st, err := os.Stat(in.out)
	switch {
	case err == nil && st.Mode()&os.ModeDevice != 0:
		d, size, err := openSized(in.out, os.O_RDWR)
		if err != nil {
			return err
		}
		in.dev, in.size = d, size
		if want != 0 && want != size {
			return usageError{fmt.Errorf("--size %d: %s has %d bytes", want, in.out, size)}
		}
		return confirmOverwrite(in.cmd, d, in.out, f.batch)
	case err == nil && !st.Mode().IsRegular():
		return fmt.Errorf("%s is neither a regular file nor a block device", in.out)
	case err == nil:
		if want == 0 {
			want = st.Size()
		}
		old, err := os.Open(in.out)
		if err != nil {
			return err
		}
		err = confirmOverwrite(in.cmd, old, in.out, f.batch)
		old.Close()
		if err != nil {
			return err
		}
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	if want == 0 {
		return usageError{fmt.Errorf("--size is required: %s does not exist yet", in.out)}
	}
	tmp, err := os.CreateTemp(filepath.Dir(in.out), "."+filepath.Base(in.out)+".tmp-*")
	if err != nil {
		return err
	}
	in.dev, in.tmp, in.size = tmp, tmp.Name(), want
	return tmp.Truncate(want)
}

// recoveryPassphrase draws keyslot 0's passphrase and seals it to the
// operator's recovery key (the token is added once the UUID is known).
func (in *encryptInputs) recoveryPassphrase(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--recovery-key: %w", err)
	}
	pub, err := recovery.ParsePublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("--recovery-key %s: %w", path, err)
	}
	pass, err := provision.NewRecoveryPassphrase()
	if err != nil {
		return nil, err
	}
	if in.uuid, err = luks2.NewUUID(); err != nil {
		return nil, err
	}
	if in.recovery, err = recovery.Wrap(pub, in.uuid, 0, []byte(pass)); err != nil {
		return nil, err
	}
	return []byte(pass), nil
}

// encryptedVolume is the volume made in memory before anything is written.
type encryptedVolume struct {
	h     *luks2.Header
	vk    []byte
	keyID string
	hdr   *recordedWrites
	plan  *preencrypt.Plan
}

// prepare makes the header (keyslot 0, the recovery token, the
// provisioning record) and the plan of every sector, in memory.
func (f *encryptFlags) prepare(in *encryptInputs) (*encryptedVolume, error) {
	o := luks2.FormatOptions{
		Integrity: f.integ, Label: f.label, Subsystem: "confidisk", HdrSize: provision.StateHeaderSize,
	}
	if in.recovery != nil {
		o.UUID = in.uuid
		o.PBKDF = luks2.PBKDF{Type: "pbkdf2", Hash: "sha512", Iterations: 1000} // a high-entropy passphrase
		raw, err := in.recovery.Marshal()
		if err != nil {
			return nil, err
		}
		o.Tokens = []json.RawMessage{raw}
	}
	hdr := &recordedWrites{}
	h, vk, err := luks2.Format(hdr, uint64(in.size), in.pass, o)
	if err != nil {
		return nil, err
	}
	if in.seal != nil {
		if _, _, err := enroll.AddOfflineEnrollment(hdr, h, vk, in.seal.srk, enroll.EnrollOptions{
			SealOptions: in.seal.opts, Keyslot: -1, TokenID: -1,
		}); err != nil {
			return nil, err
		}
	}
	plan, err := preencrypt.NewPlan(h, vk, uint64(in.size)/512, in.dataSize)
	if err != nil {
		return nil, err
	}
	tok, err := provision.PreEncryptedToken(h, &plan.Layout.Superblock, vk, provision.PreEncryptedOptions{
		RW: provision.RWMode(f.rw), HasFilesystem: in.hasFS, RecoveryKeyslot: 0,
	})
	if err != nil {
		return nil, err
	}
	if _, err := h.AddToken(tok, -1); err != nil {
		return nil, err
	}
	if err := h.Write(hdr); err != nil {
		return nil, err
	}
	return &encryptedVolume{h: h, vk: vk, keyID: tpm.FixateValue(vk, provision.StateName, h.UUID), hdr: hdr, plan: plan}, nil
}

// putKey registers the volume at the broker and stores its key there.
func (f *encryptFlags) putKey(cmd *cobra.Command, vol *encryptedVolume) error {
	require, err := f.require.object()
	if err != nil {
		return err
	}
	c, err := f.broker.client()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx := cmd.Context()
	if _, err := c.Register(ctx, api.RegisterRequest{Volume: api.VolumeSpec{UUID: vol.h.UUID, KeyID: vol.keyID}}); err != nil {
		return fmt.Errorf("register volume %s at the broker: %w", vol.h.UUID, err)
	}
	if err := c.PutKey(ctx, vol.h.UUID, vol.keyID, vol.vk, require); err != nil {
		return fmt.Errorf("store the key of volume %s at the broker: %w", vol.h.UUID, err)
	}
	return nil
}

// write writes the header and every sector, makes them durable and, for an
// image file, renames it to its name.
func (in *encryptInputs) write(vol *encryptedVolume) error {
	if err := vol.hdr.replay(in.dev); err != nil {
		return fmt.Errorf("write the header: %w", err)
	}
	var data io.ReaderAt
	if in.data != nil {
		data = in.data
	}
	bar := newProgress("encrypting sectors", vol.plan.ProvidedBytes())
	err := vol.plan.Write(in.dev, data, func(done, _ int64) { bar.update(uint64(done), 0) })
	bar.finish()
	if err != nil {
		return err
	}
	if in.tmp == "" {
		return in.dev.Sync()
	}
	if err := errors.Join(in.dev.Chmod(0o600), in.dev.Sync()); err != nil {
		return err
	}
	if err := os.Rename(in.tmp, in.out); err != nil {
		return err
	}
	in.tmp = ""
	return syncDir(filepath.Dir(in.out))
}

// srkSeal is what --tpm2-device-key seals to.
type srkSeal struct {
	srk  *tpm2.TPMTPublic
	opts tpm.SealOptions
}

// srkSealOptions reads the SRK public key and the PCR values, every one of
// which must be given, and adds PCR 15 at zero (as first boot seals: nothing
// unseals once a volume is measured).
func srkSealOptions(srkFile, spec string) (*srkSeal, error) {
	b, err := os.ReadFile(srkFile)
	if err != nil {
		return nil, fmt.Errorf("--tpm2-device-key: %w", err)
	}
	srk, err := tpm.ParseSRKPublic(b)
	if err != nil {
		return nil, fmt.Errorf("--tpm2-device-key %s: %w", srkFile, err)
	}
	pcrs, vals, bank, err := parseTPM2PCRs(spec)
	if err != nil {
		return nil, usageError{err}
	}
	for _, p := range pcrs {
		if _, ok := vals[p]; !ok {
			return nil, usageError{fmt.Errorf("--tpm2-pcrs: PCR %d has no value (the vTPM is not here to read it): give %d:sha256=HEX", p, p)}
		}
	}
	if bank == "" {
		bank = tpm.SHA256
	}
	if _, ok := vals[tpm.VolumeKeyPCR]; !ok {
		h, err := bank.Hash()
		if err != nil {
			return nil, err
		}
		pcrs, vals[tpm.VolumeKeyPCR] = append(pcrs, tpm.VolumeKeyPCR), make([]byte, h.Size())
	}
	return &srkSeal{srk: srk, opts: tpm.SealOptions{Bank: bank, PCRs: pcrs, PCRValues: vals}}, nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
