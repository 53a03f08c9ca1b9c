package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/confidisk/confidisk/activate"
	"github.com/confidisk/confidisk/devlock"
	"github.com/confidisk/confidisk/dm"
	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/preencrypt"
	"github.com/confidisk/confidisk/probe"
	"github.com/confidisk/confidisk/tpm"
)

func newLUKSCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "luks",
		Short: "Create, open and manage LUKS2 volumes (cryptsetup-compatible)",
		Long: `LUKS2 volumes encrypt a device with a volume key that is kept, encrypted under
passphrases, in keyslots of a header at the start of the device. With
--integrity, every sector also carries an authentication tag (dm-integrity), so
that changed ciphertext reads as an I/O error instead of garbage.

Headers are written in Go, byte-compatible with cryptsetup 2.6: a volume made
here opens with cryptsetup and the other way round. Flags are named as in
cryptsetup. Commands that map devices (open, close, and format with
--integrity) need root and device-mapper.`,
	}
	cmd.AddCommand(newLUKSFormatCmd(), newLUKSOpenCmd(), newLUKSCloseCmd(), newLUKSDumpCmd(),
		newLUKSAddKeyCmd(), newLUKSChangeKeyCmd(), newLUKSRemoveKeyCmd(), newLUKSKillSlotCmd(), newLUKSTokenCmd(),
		newLUKSHeaderBackupCmd(), newLUKSHeaderRestoreCmd(), newLUKSEnrollTPM2Cmd(), newLUKSRecoverCmd())
	return cmd
}

// keyInput is how a command gets a passphrase: --key-file (a file, or - for
// standard input, read whole), else a no-echo prompt on a terminal, else one
// line of standard input.
type keyInput struct {
	keyFile string
	in      io.Reader
	stderr  io.Writer
}

func (k *keyInput) read(prompt string, confirm bool) ([]byte, error) {
	if k.keyFile != "" {
		var b []byte
		var err error
		if k.keyFile == "-" {
			b, err = io.ReadAll(io.LimitReader(k.in, 8<<20+1))
		} else {
			b, err = readFileLimited(k.keyFile, 8<<20)
		}
		if err != nil {
			return nil, fmt.Errorf("read key file: %w", err)
		}
		if len(b) > 8<<20 {
			return nil, errors.New("key file is larger than 8 MiB")
		}
		if len(b) == 0 {
			return nil, errors.New("key file is empty")
		}
		return b, nil
	}
	if f, ok := k.in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(k.stderr, prompt)
		p, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(k.stderr)
		if err != nil {
			return nil, err
		}
		if confirm {
			fmt.Fprint(k.stderr, "Verify passphrase: ")
			q, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(k.stderr)
			if err != nil {
				return nil, err
			}
			if !bytes.Equal(p, q) {
				return nil, errors.New("passphrases do not match")
			}
		}
		if len(p) == 0 {
			return nil, errors.New("empty passphrase")
		}
		return p, nil
	}
	line, err := bufio.NewReader(k.in).ReadString('\n')
	if err != nil && (err != io.EOF || line == "") {
		return nil, fmt.Errorf("read passphrase from standard input: %w", err)
	}
	p := []byte(strings.TrimSuffix(line, "\n"))
	if len(p) == 0 {
		return nil, errors.New("empty passphrase")
	}
	return p, nil
}

func readFileLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit+1))
}

// pbkdfFlags are cryptsetup's keyslot KDF options.
type pbkdfFlags struct {
	pbkdf      string
	hash       string
	iterations int
	memory     int
	parallel   int
	iterTimeMS int
}

func (p *pbkdfFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&p.pbkdf, "pbkdf", "argon2id", "keyslot KDF: argon2id, argon2i or pbkdf2")
	fs.StringVar(&p.hash, "hash", "sha256", "hash for pbkdf2 and the anti-forensic splitter")
	fs.IntVar(&p.iterations, "pbkdf-force-iterations", 0, "fixed KDF cost (pbkdf2 iterations or Argon2 time cost) instead of a benchmark")
	fs.IntVar(&p.memory, "pbkdf-memory", 0, "Argon2 memory in KiB (default: up to 1 GiB, at most half the RAM)")
	fs.IntVar(&p.parallel, "pbkdf-parallel", 0, "Argon2 threads (default: up to 4)")
	fs.IntVarP(&p.iterTimeMS, "iter-time", "i", 2000, "unlock time the KDF benchmark aims at, in milliseconds")
}

func (p *pbkdfFlags) value() luks2.PBKDF {
	return luks2.PBKDF{Type: p.pbkdf, Hash: p.hash, Iterations: p.iterations, MemoryKiB: p.memory,
		Parallel: p.parallel, IterTime: time.Duration(p.iterTimeMS) * time.Millisecond}
}

// deviceFile is an open device: an *os.File, or a test double.
type deviceFile interface {
	luks2.Device
	io.Closer
}

// openDeviceFile opens the file or block device under a LUKS2 command;
// tests replace it to inject faults.
var openDeviceFile = func(path string, flag int) (deviceFile, int64, error) {
	return openSized(path, flag)
}

// device is an open LUKS2 device with its metadata lock.
type device struct {
	f    deviceFile
	size int64
	lock *devlock.Lock
	// auth keeps a provisioned state volume's authenticated metadata
	// current (see withHeader); nil on read-only devices.
	auth *metaAuth
}

func openDevice(path string, write bool) (*device, error) {
	flag := os.O_RDONLY
	if write {
		flag = os.O_RDWR
	}
	f, size, err := openDeviceFile(path, flag)
	if err != nil {
		return nil, err
	}
	l, err := devlock.Acquire(path, write, false)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &device{f: f, size: size, lock: l}, nil
}

func (d *device) close() error {
	d.lock.Unlock()
	return d.f.Close()
}

// readHeader reads the LUKS2 header. A damaged or stale copy is only
// reported (a warning for read-only commands): it is repaired by the next
// header write of a command that succeeds (see withHeader).
func (d *device) readHeader(path string, stderr io.Writer, writable bool) (*luks2.Header, *luks2.ReadReport, error) {
	h, rep, err := luks2.Read(d.f)
	switch {
	case errors.Is(err, luks2.ErrNotLUKS2) && d.size == 0:
		return nil, nil, fmt.Errorf("%s is empty (0 bytes), not a LUKS2 device", path)
	case errors.Is(err, luks2.ErrNotLUKS2):
		return nil, nil, fmt.Errorf("%s is not a LUKS2 device", path)
	case err != nil:
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if rep.NeedsRepair() && !writable {
		fmt.Fprintf(stderr, "WARNING: %s: %s; using the valid copy (a command that writes the header repairs it).\n", path, damage(rep))
	}
	return h, rep, nil
}

// damage says what is wrong with a header that needs repair.
func damage(rep *luks2.ReadReport) string {
	switch {
	case rep.PrimaryErr != nil:
		return fmt.Sprintf("the primary header is damaged (%v)", rep.PrimaryErr)
	case rep.SecondaryErr != nil:
		return fmt.Sprintf("the secondary header is damaged (%v)", rep.SecondaryErr)
	}
	return "the two header copies differ"
}

// checkWritable refuses to write the header of a device smaller than the
// header and keyslots area it describes (a truncated image): the write
// would grow a file, or fail half-way on a block device.
func (d *device) checkWritable(path string, h *luks2.Header) error {
	need := 2*h.HdrSize + uint64(h.Metadata.Config.KeyslotsSize)
	if uint64(d.size) < need {
		return fmt.Errorf("%s holds %d bytes, less than the %d bytes of its LUKS2 header and keyslots (truncated?); not writing to it (restore the image, or header-restore a backup onto a device of the right size)", path, d.size, need)
	}
	return nil
}

// writeHeader writes both header copies (each synced), with the MAC of
// authenticated metadata recomputed first (see metaAuth).
func writeHeader(d *device, h *luks2.Header) error {
	if d.auth != nil {
		if err := d.auth.refresh(h); err != nil {
			return err
		}
	}
	return h.Write(d.f)
}

// formatFlags are luks format's flags, named as cryptsetup luksFormat's.
type formatFlags struct {
	kdf                                   pbkdfFlags
	typ, cipher, integ, keyFile, label    string
	subsystem, uuid, volumeKeyFile        string
	keySizeBits, sectorSize, keySlot      int
	metadataSize, keyslotsSize, offset    uint64
	batch, integrityNoWipe, integrityFast bool
	offline                               bool
	dataFile                              string
}

func (f *formatFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	f.kdf.register(fl)
	fl.StringVar(&f.typ, "type", "luks2", "header type (only luks2)")
	fl.StringVarP(&f.cipher, "cipher", "c", "", "cipher (default aes-xts-plain64; aes-gcm-random with --integrity aead)")
	fl.IntVarP(&f.keySizeBits, "key-size", "s", 0, "cipher key size in bits (default 512 for XTS, 256 otherwise); an integrity key is added")
	fl.StringVar(&f.integ, "integrity", "", "integrity protection: hmac-sha256, hmac-sha512 or aead")
	fl.BoolVar(&f.integrityNoWipe, "integrity-no-wipe", false, "do not initialise integrity tags (reads of unwritten sectors fail)")
	fl.BoolVar(&f.integrityFast, "integrity-fast", false, "initialise only the first and last MiB of integrity tags")
	fl.IntVar(&f.sectorSize, "sector-size", 4096, "encryption sector size: 512, 1024, 2048 or 4096")
	fl.StringVarP(&f.keyFile, "key-file", "d", "", "read the passphrase from this file (- for standard input)")
	fl.StringVar(&f.volumeKeyFile, "volume-key-file", "", "use the volume key in this file instead of a random one")
	fl.IntVarP(&f.keySlot, "key-slot", "S", 0, "keyslot for the passphrase")
	fl.StringVar(&f.label, "label", "", "header label")
	fl.StringVar(&f.subsystem, "subsystem", "", "header subsystem")
	fl.StringVar(&f.uuid, "uuid", "", "header UUID (default: random)")
	fl.Uint64Var(&f.metadataSize, "luks2-metadata-size", 0, "size of one header copy in bytes (16384 … 4194304)")
	fl.Uint64Var(&f.keyslotsSize, "luks2-keyslots-size", 0, "size of the keyslots area in bytes")
	fl.Uint64Var(&f.offset, "offset", 0, "data offset in 512-byte sectors (default 32768)")
	fl.BoolVarP(&f.batch, "batch-mode", "q", false, "do not ask for confirmation before overwriting")
	fl.BoolVar(&f.offline, "offline", false, "with --integrity: write the dm-integrity superblock and every sector with its tag in userspace (no device-mapper, no root)")
	fl.StringVar(&f.dataFile, "data", "", "with --offline: encrypt this file into the volume (a multiple of the sector size); the rest reads as zeros")
	cmd.MarkFlagsMutuallyExclusive("integrity-no-wipe", "integrity-fast")
	cmd.MarkFlagsMutuallyExclusive("offline", "integrity-no-wipe")
	cmd.MarkFlagsMutuallyExclusive("offline", "integrity-fast")
}

// options checks the flags and returns the format options.
func (f *formatFlags) options() (luks2.FormatOptions, error) {
	if f.typ != "luks2" {
		return luks2.FormatOptions{}, usageError{fmt.Errorf("--type %q: only luks2 is supported", f.typ)}
	}
	if f.keySizeBits%8 != 0 {
		return luks2.FormatOptions{}, usageError{fmt.Errorf("--key-size %d is not a whole number of bytes", f.keySizeBits)}
	}
	o := luks2.FormatOptions{
		Cipher: f.cipher, KeySize: f.keySizeBits / 8, Integrity: f.integ, SectorSize: f.sectorSize,
		PBKDF: f.kdf.value(), Label: f.label, Subsystem: f.subsystem, UUID: f.uuid,
		HdrSize: f.metadataSize, KeyslotsSize: f.keyslotsSize, DataOffset: f.offset * 512, Keyslot: f.keySlot,
	}
	if f.volumeKeyFile != "" {
		var err error
		if o.VolumeKey, err = os.ReadFile(f.volumeKeyFile); err != nil {
			return o, fmt.Errorf("read volume key file: %w", err)
		}
	}
	return o, nil
}

// initMode is how the flags say integrity tags are initialised.
func (f *formatFlags) initMode() activate.InitMode {
	switch {
	case f.integrityNoWipe:
		return activate.InitNone
	case f.integrityFast:
		return activate.InitFast
	}
	return activate.InitFull
}

func newLUKSFormatCmd() *cobra.Command {
	f := &formatFlags{}
	cmd := &cobra.Command{
		Use:   "format DEVICE",
		Short: "Write a new LUKS2 header (and initialise integrity) on DEVICE",
		Long: `Write a new LUKS2 header to DEVICE (a block device or an image file) with one
passphrase in a keyslot, as cryptsetup luksFormat --type luks2 does. All data on
DEVICE is lost; a device that already holds a file system or volume is refused
unless you confirm on the terminal or give --batch-mode.

With --integrity (hmac-sha256, hmac-sha512, or aead with --cipher
aes-gcm-random) every sector gets an authentication tag. The kernel then writes
the dm-integrity superblock and the tags must be initialised, which needs root
and device-mapper:
  (default)            write zeros through the whole volume, as cryptsetup does:
                       every sector reads back as zeros.
  --integrity-fast     write only the first and last MiB. Unwritten sectors
                       fail to read (EIO) until written: never stale or foreign
                       data, since old tags cannot verify under the new key.
  --integrity-no-wipe  write none (reads of any unwritten sector fail).

With --offline (aes-xts-plain64 with --integrity hmac-sha256 or hmac-sha512, or
aes-gcm-random with --integrity aead), confidisk
writes all of it itself, without device-mapper or root: the dm-integrity
superblock, an empty journal and every sector encrypted with its tag, so that
the kernel opens the volume as if cryptsetup had made and wiped it. --data FILE
puts FILE's bytes at the start of the volume (the rest reads as zeros): a
pre-encrypted volume made by trusted infrastructure. Nothing is written before
the cipher, the sizes and the data have been checked; the superblock is written
last, so a volume whose writing was interrupted does not open.`,
		Example: `  confidisk luks format --batch-mode --key-file key.txt disk.img
  confidisk luks format --integrity hmac-sha256 --sector-size 4096 /dev/vdb
  confidisk luks format -q --integrity hmac-sha256 --offline --data rootfs.img --key-file key.txt state.img
  confidisk luks format --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --label state disk.img`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runFormat(cmd, args[0], f) },
	}
	f.register(cmd)
	return cmd
}

// runFormat formats path: the header, then, with integrity, the
// dm-integrity superblock and tags through the kernel.
func runFormat(cmd *cobra.Command, path string, f *formatFlags) error {
	o, err := f.options()
	if err != nil {
		return err
	}
	if f.dataFile != "" && !f.offline {
		return usageError{errors.New("--data needs --offline")}
	}
	if f.offline {
		return runFormatOffline(cmd, path, f, o)
	}
	d, pass, err := openForFormat(cmd, path, f)
	if err != nil {
		return err
	}
	defer d.close()
	var client *dm.Client
	if f.integ != "" && f.integ != "none" {
		if client, err = dm.Open(dm.DefaultControl); err != nil {
			return fmt.Errorf("--integrity needs device-mapper (the kernel writes the dm-integrity superblock), or --offline to write it all in userspace: %w", err)
		}
		defer client.Close()
	}
	h, vk, err := luks2.Format(d.f, uint64(d.size), pass, o)
	if err != nil {
		return fmt.Errorf("format %s: %w", path, err)
	}
	if err := d.f.Sync(); err != nil || client == nil {
		return err
	}
	d.lock.Unlock() // activation takes its own view of the device
	d.lock = nil
	mode := f.initMode()
	total := d.size
	if mode == activate.InitNone {
		total = 0 // no tags written: no bar
	}
	bar := newProgress("initialising integrity tags", total)
	err = activate.InitIntegrityTags(client, path, h, vk, mode, func(done, _ int64) { bar.update(uint64(done), 0) })
	bar.finish()
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// openForFormat opens path for writing, checks that overwriting it is
// wanted and reads the new passphrase.
func openForFormat(cmd *cobra.Command, path string, f *formatFlags) (*device, []byte, error) {
	d, err := openDevice(path, true)
	if err != nil {
		return nil, nil, err
	}
	if err := confirmOverwrite(cmd, d.f, path, f.batch); err != nil {
		d.close()
		return nil, nil, err
	}
	pass, err := readKey(cmd, f.keyFile, fmt.Sprintf("Enter passphrase for %s: ", path), true)
	if err != nil {
		d.close()
		return nil, nil, err
	}
	return d, pass, nil
}

// runFormatOffline formats path with integrity entirely in userspace: the
// header, then (package preencrypt) every sector and its tag, the journal
// and the dm-integrity superblock. The header is made in memory first, so
// that everything is checked (cipher, data size) before the first write.
func runFormatOffline(cmd *cobra.Command, path string, f *formatFlags, o luks2.FormatOptions) error {
	if f.integ == "" || f.integ == "none" {
		return usageError{errors.New("--offline is for volumes with --integrity (without it, format needs no device-mapper anyway)")}
	}
	var data io.ReaderAt // nil: the volume reads as zeros
	var dataSize int64
	if f.dataFile != "" {
		df, size, err := openSized(f.dataFile, os.O_RDONLY)
		if err != nil {
			return fmt.Errorf("--data: %w", err)
		}
		defer df.Close()
		data, dataSize = df, size
	}
	d, pass, err := openForFormat(cmd, path, f)
	if err != nil {
		return err
	}
	defer d.close()
	var hdr recordedWrites
	h, vk, err := luks2.Format(&hdr, uint64(d.size), pass, o)
	if err != nil {
		return fmt.Errorf("format %s: %w", path, err)
	}
	plan, err := preencrypt.NewPlan(h, vk, uint64(d.size)/512, dataSize)
	if err != nil {
		return fmt.Errorf("format %s: %w", path, err)
	}
	if err := hdr.replay(d.f); err != nil {
		return fmt.Errorf("write the header of %s: %w", path, err)
	}
	bar := newProgress("encrypting sectors", plan.ProvidedBytes())
	err = plan.Write(d.f, data, func(done, _ int64) { bar.update(uint64(done), 0) })
	bar.finish()
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return d.f.Sync()
}

// recordedWrites is an io.WriterAt that keeps the writes for later (and
// reads them back: a device in memory).
type recordedWrites struct {
	writes []recordedWrite
}

type recordedWrite struct {
	off int64
	b   []byte
}

func (r *recordedWrites) WriteAt(b []byte, off int64) (int, error) {
	r.writes = append(r.writes, recordedWrite{off, append([]byte(nil), b...)})
	return len(b), nil
}

// ReadAt reads what the recorded writes put at off, over a device of zeros.
func (r *recordedWrites) ReadAt(b []byte, off int64) (int, error) {
	clear(b)
	end := off + int64(len(b))
	for _, w := range r.writes {
		wEnd := w.off + int64(len(w.b))
		if w.off >= end || wEnd <= off {
			continue
		}
		lo, hi := max(off, w.off), min(end, wEnd)
		copy(b[lo-off:hi-off], w.b[lo-w.off:hi-w.off])
	}
	return len(b), nil
}

// Sync does nothing: the writes are made durable where they are replayed.
func (r *recordedWrites) Sync() error { return nil }

// replay writes the recorded writes to w, in order.
func (r *recordedWrites) replay(w io.WriterAt) error {
	for _, x := range r.writes {
		if _, err := w.WriteAt(x.b, x.off); err != nil {
			return err
		}
	}
	return nil
}

// confirmOverwrite refuses to format over something recognisable unless the
// user confirms on a terminal (typing YES, as with cryptsetup) or batch is set.
func confirmOverwrite(cmd *cobra.Command, f io.ReaderAt, path string, batch bool) error {
	if batch {
		return nil
	}
	what, err := probe.Identify(f)
	if err != nil || what == "" {
		return err
	}
	return confirm(cmd, fmt.Sprintf("%s holds a %s signature", path, what),
		fmt.Sprintf("This will overwrite data on %s irrevocably.", path))
}

// confirm asks on a terminal, in cryptsetup's words, whether to go on
// despite problem (typing YES); without a terminal it refuses, naming
// --batch-mode.
func confirm(cmd *cobra.Command, problem, consequence string) error {
	in, ok := cmd.InOrStdin().(*os.File)
	if !ok || !term.IsTerminal(int(in.Fd())) {
		return fmt.Errorf("%s; refusing to go on without --batch-mode (or a terminal to confirm on)", problem)
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "WARNING!\n========\n%s.\n%s\n\nAre you sure? (Type 'yes' in capital letters): ", problem, consequence)
	line, _ := bufio.NewReader(in).ReadString('\n')
	if strings.TrimSpace(line) != "YES" {
		return errors.New("operation aborted")
	}
	return nil
}

func newLUKSOpenCmd() *cobra.Command {
	var (
		keyFile, tpmDevice, sigFile    string
		keySlot                        int
		testPassphrase, readOnly       bool
		tokenOnly                      bool
		allowDiscards, noRead, noWrite bool
	)
	cmd := &cobra.Command{
		Use:   "open DEVICE [NAME]",
		Short: "Unlock DEVICE and map it as /dev/mapper/NAME",
		Long: `Unlock the LUKS2 volume on DEVICE with a passphrase and map it as
/dev/mapper/NAME, with the dm-crypt (and dm-integrity) tables cryptsetup builds;
the volume key reaches the kernel through the kernel keyring. With
--test-passphrase only check the passphrase (no NAME, no root needed).`,
		Example: `  confidisk luks open /dev/vdb state
  confidisk luks open --test-passphrase --key-file key.txt disk.img`,
		Args: rangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			if !testPassphrase && len(args) != 2 {
				return usageError{errors.New("missing NAME (or give --test-passphrase)")}
			}
			d, h, err := openHeader(cmd, path)
			if err != nil {
				return err
			}
			var vk []byte
			if tokenOnly {
				vk, err = unlockWithTPM2(cmd, tpmDevice, sigFile, d, h)
			} else {
				var pass []byte
				if pass, err = readKey(cmd, keyFile, fmt.Sprintf("Enter passphrase for %s: ", path), false); err == nil {
					vk, _, err = h.Unlock(d.f, pass, keySlot)
				}
			}
			d.close()
			if err != nil {
				return err
			}
			if testPassphrase {
				return nil
			}
			client, err := dm.Open(dm.DefaultControl)
			if err != nil {
				return fmt.Errorf("device-mapper: %w", err)
			}
			defer client.Close()
			p, err := activate.LUKS(client, args[1], path, h, vk, activate.LUKSOptions{
				ReadOnly: readOnly, AllowDiscards: allowDiscards, NoReadWorkqueue: noRead, NoWriteWorkqueue: noWrite,
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), p)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&keyFile, "key-file", "d", "", "read the passphrase from this file (- for standard input)")
	fl.IntVarP(&keySlot, "key-slot", "S", -1, "try only this keyslot")
	fl.BoolVar(&testPassphrase, "test-passphrase", false, "only check the passphrase; map nothing")
	fl.BoolVar(&tokenOnly, "token-only", false, "unlock with the systemd-tpm2 token (the TPM) instead of a passphrase")
	fl.StringVar(&tpmDevice, "tpm2-device", tpm.DefaultDevice, "TPM for --token-only: /dev/tpmrm0, or swtpm:PATH")
	fl.StringVar(&sigFile, "tpm2-signature", "", "PCR signature document (a UKI's .pcrsig, systemd-measure sign) for a token with a signed PCR policy (default: /run/systemd/tpm2-pcr-signature.json or /.extra/tpm2-pcr-signature.json when present)")
	fl.BoolVarP(&readOnly, "readonly", "r", false, "map read-only")
	fl.BoolVar(&allowDiscards, "allow-discards", false, "pass discards down (not with integrity)")
	fl.BoolVar(&noRead, "perf-no_read_workqueue", false, "dm-crypt no_read_workqueue")
	fl.BoolVar(&noWrite, "perf-no_write_workqueue", false, "dm-crypt no_write_workqueue")
	return cmd
}

func newLUKSCloseCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "close NAME",
		Short: "Remove /dev/mapper/NAME (and its integrity device)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, err := openMapped(args[0])
			if err != nil {
				return err
			}
			defer client.Close()
			sub, err := client.Info(args[0] + "_dif")
			if err != nil {
				return err
			}
			return activate.CloseLUKS(client, args[0], sub.Exists)
		},
	}
}

func newLUKSDumpCmd() *cobra.Command {
	var dumpJSON bool
	cmd := &cobra.Command{
		Use:   "dump DEVICE",
		Short: "Show the LUKS2 header (as cryptsetup luksDump)",
		Long: `Print the header of DEVICE as cryptsetup luksDump does, or with
--dump-json-metadata its JSON metadata exactly as cryptsetup prints it.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, h, err := openHeader(cmd, args[0])
			if err != nil {
				return err
			}
			defer d.close()
			if dumpJSON {
				b, err := h.DumpJSON()
				if err != nil {
					return err
				}
				_, err = fmt.Fprintln(cmd.OutOrStdout(), string(b))
				return err
			}
			h.Dump(cmd.OutOrStdout())
			return nil
		},
	}
	cmd.Flags().BoolVar(&dumpJSON, "dump-json-metadata", false, "print the JSON metadata")
	cmd.Flags().BoolVar(&dumpJSON, "json", false, "same as --dump-json-metadata")
	return cmd
}

// withHeader opens DEVICE for writing and reads its header; fn checks its
// inputs, changes the header and reports whether to write it (or writes it
// itself). Nothing is written before fn has checked its inputs: a damaged or
// stale header copy is repaired by the header write of a command that
// succeeds, and only then is the user told so.
func withHeader(cmd *cobra.Command, path string, fn func(d *device, h *luks2.Header) (write bool, err error)) error {
	d, err := openDevice(path, true)
	if err != nil {
		return err
	}
	defer d.close()
	h, rep, err := d.readHeader(path, cmd.ErrOrStderr(), true)
	if err != nil {
		return err
	}
	if err := d.checkWritable(path, h); err != nil {
		return err
	}
	d.auth = newMetaAuth(path, h)
	seq := h.SeqID
	write, err := fn(d, h)
	if err != nil {
		return err
	}
	if write {
		if err := writeHeader(d, h); err != nil {
			return err
		}
	}
	if rep.NeedsRepair() && h.SeqID != seq {
		fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s; repaired from the valid copy.\n", path, damage(rep))
	}
	return nil
}

// openHeader opens DEVICE read-only with a shared lock and reads its header
// (warning about a damaged copy); the caller closes the device.
func openHeader(cmd *cobra.Command, path string) (*device, *luks2.Header, error) {
	d, err := openDevice(path, false)
	if err != nil {
		return nil, nil, err
	}
	h, _, err := d.readHeader(path, cmd.ErrOrStderr(), false)
	if err != nil {
		d.close()
		return nil, nil, err
	}
	return d, h, nil
}

// readKey reads a passphrase from keyFile, or asks with prompt.
func readKey(cmd *cobra.Command, keyFile, prompt string, confirm bool) ([]byte, error) {
	return (&keyInput{keyFile: keyFile, in: cmd.InOrStdin(), stderr: cmd.ErrOrStderr()}).read(prompt, confirm)
}

func newLUKSAddKeyCmd() *cobra.Command {
	var (
		kdf              pbkdfFlags
		keyFile, newFile string
		keySlot          int
	)
	cmd := &cobra.Command{
		Use:   "add-key DEVICE [NEW_KEY_FILE]",
		Short: "Add a passphrase in a new keyslot",
		Long: `Unlock DEVICE with an existing passphrase (--key-file, or asked) and add a new
one (from NEW_KEY_FILE, or asked) in a free keyslot (or --key-slot).`,
		Args: rangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 2 {
				newFile = args[1]
			}
			return withHeader(cmd, args[0], func(d *device, h *luks2.Header) (bool, error) {
				old, err := readKey(cmd, keyFile, "Enter any existing passphrase: ", false)
				if err != nil {
					return false, err
				}
				vk, _, err := h.Unlock(d.f, old, -1)
				if err != nil {
					return false, err
				}
				if err := d.auth.unlocked(h, vk); err != nil {
					return false, err
				}
				nk, err := readKey(cmd, newFile, "Enter new passphrase for key slot: ", true)
				if err != nil {
					return false, err
				}
				k, err := kdf.value().KDF()
				if err != nil {
					return false, err
				}
				slot, err := h.AddKeyslot(d.f, vk, nk, keySlot, k)
				if err != nil {
					return false, err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "Key slot %d created.\n", slot)
				return true, nil
			})
		},
	}
	kdf.register(cmd.Flags())
	cmd.Flags().StringVarP(&keyFile, "key-file", "d", "", "read an existing passphrase from this file (- for standard input)")
	cmd.Flags().IntVarP(&keySlot, "key-slot", "S", -1, "keyslot for the new passphrase (default: the first free one)")
	return cmd
}

func newLUKSChangeKeyCmd() *cobra.Command {
	var (
		kdf              pbkdfFlags
		keyFile, newFile string
	)
	cmd := &cobra.Command{
		Use:   "change-key DEVICE [NEW_KEY_FILE]",
		Short: "Replace a passphrase by a new one",
		Long: `Replace the passphrase given with --key-file (or asked) by a new one (from
NEW_KEY_FILE, or asked), in a new keyslot: as cryptsetup does, the new keyslot
is written and the header naming it synced before the old keyslot is wiped and
dropped, so an interruption never leaves the volume without either.`,
		Args: rangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 2 {
				newFile = args[1]
			}
			return withHeader(cmd, args[0], func(d *device, h *luks2.Header) (bool, error) {
				old, err := readKey(cmd, keyFile, "Enter passphrase to be changed: ", false)
				if err != nil {
					return false, err
				}
				nk, err := readKey(cmd, newFile, "Enter new passphrase: ", true)
				if err != nil {
					return false, err
				}
				k, err := kdf.value().KDF()
				if err != nil {
					return false, err
				}
				if d.auth.enabled() {
					vk, _, err := h.Unlock(d.f, old, -1)
					if err != nil {
						return false, err
					}
					if err := d.auth.unlocked(h, vk); err != nil {
						return false, err
					}
				}
				slot, err := h.ChangeKey(d.f, old, nk, k, func() error { return writeHeader(d, h) })
				if err != nil {
					return false, err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "Key slot %d now holds the new passphrase.\n", slot)
				return false, nil // ChangeKey wrote the header
			})
		},
	}
	kdf.register(cmd.Flags())
	cmd.Flags().StringVarP(&keyFile, "key-file", "d", "", "read the passphrase to change from this file (- for standard input)")
	return cmd
}

func newLUKSRemoveKeyCmd() *cobra.Command {
	var keyFile string
	cmd := &cobra.Command{
		Use:   "remove-key DEVICE",
		Short: "Remove the keyslot that a passphrase opens",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withHeader(cmd, args[0], func(d *device, h *luks2.Header) (bool, error) {
				p, err := readKey(cmd, keyFile, "Enter passphrase to be deleted: ", false)
				if err != nil {
					return false, err
				}
				vk, slot, err := h.Unlock(d.f, p, -1)
				if err != nil {
					return false, err
				}
				if err := d.auth.unlocked(h, vk); err != nil {
					return false, err
				}
				if err := h.KillKeyslot(d.f, slot, false); err != nil {
					return false, err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "Key slot %d removed.\n", slot)
				return true, nil
			})
		},
	}
	cmd.Flags().StringVarP(&keyFile, "key-file", "d", "", "read the passphrase from this file (- for standard input)")
	return cmd
}

func newLUKSKillSlotCmd() *cobra.Command {
	var (
		force   bool
		keyFile string
	)
	cmd := &cobra.Command{
		Use:   "kill-slot DEVICE SLOT",
		Short: "Remove keyslot SLOT",
		Long: `Remove keyslot SLOT and wipe its key material. Removing the last keyslot
makes the volume unopenable and needs --force.

No passphrase is needed, except on a state volume provisioned by confidisk boot
(its metadata is authenticated under the volume key, and the MAC must be
recomputed in the same write): give a passphrase of another keyslot with
--key-file.`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			slot, err := strconv.Atoi(args[1])
			if err != nil {
				return usageError{fmt.Errorf("SLOT %q is not a number", args[1])}
			}
			return withHeader(cmd, args[0], func(d *device, h *luks2.Header) (bool, error) {
				if d.auth.enabled() || keyFile != "" {
					p, err := readKey(cmd, keyFile, "Enter a passphrase of another keyslot: ", false)
					if err != nil {
						return false, err
					}
					vk, used, err := h.Unlock(d.f, p, -1)
					if err != nil {
						return false, err
					}
					if used == slot && !force {
						return false, fmt.Errorf("the passphrase opens keyslot %d itself; give one of another keyslot", slot)
					}
					if err := d.auth.unlocked(h, vk); err != nil {
						return false, err
					}
				}
				return true, h.KillKeyslot(d.f, slot, force)
			})
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "allow removing the last keyslot")
	cmd.Flags().StringVarP(&keyFile, "key-file", "d", "", "a passphrase of another keyslot (needed on confidisk state volumes; - for standard input)")
	return cmd
}

func newLUKSTokenCmd() *cobra.Command {
	var (
		jsonFile string
		tokenID  int
	)
	cmd := &cobra.Command{
		Use:   "token add|import|remove|export DEVICE",
		Short: "Manage LUKS2 tokens (JSON objects in the header)",
		Long: `import (or add) reads a token JSON object (with "type" and "keyslots") from
--json-file or standard input and stores it at --token-id (default: the first
free id); export prints token --token-id; remove deletes it.`,
		Example: `  echo '{"type":"example","keyslots":["0"]}' | confidisk luks token import disk.img
  confidisk luks token export --token-id 0 disk.img`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			action, path := args[0], args[1]
			switch action {
			case "export":
				if tokenID < 0 {
					return usageError{errors.New("export needs --token-id")}
				}
				d, h, err := openHeader(cmd, path)
				if err != nil {
					return err
				}
				defer d.close()
				t := h.Metadata.Tokens[tokenID]
				if t == nil {
					return fmt.Errorf("token %d does not exist", tokenID)
				}
				_, err = fmt.Fprintln(cmd.OutOrStdout(), string(t))
				return err
			case "import", "add":
				b, err := readTokenInput(cmd.InOrStdin(), jsonFile)
				if err != nil {
					return err
				}
				return withHeader(cmd, path, func(_ *device, h *luks2.Header) (bool, error) {
					id, err := h.AddToken(b, tokenID)
					if err == nil {
						fmt.Fprintf(cmd.ErrOrStderr(), "Token %d created.\n", id)
					}
					return err == nil, err
				})
			case "remove":
				if tokenID < 0 {
					return usageError{errors.New("remove needs --token-id")}
				}
				return withHeader(cmd, path, func(_ *device, h *luks2.Header) (bool, error) {
					return true, h.RemoveToken(tokenID)
				})
			}
			return usageError{fmt.Errorf("unknown token action %q (want add, import, remove or export)", action)}
		},
	}
	cmd.Flags().StringVar(&jsonFile, "json-file", "", "read the token from this file (default: standard input)")
	cmd.Flags().IntVar(&tokenID, "token-id", -1, "token id")
	return cmd
}

func newLUKSHeaderBackupCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "header-backup DEVICE --header-backup-file FILE",
		Short: "Save the header and keyslot areas to a file",
		Long: `Copy everything before the data segment (both header copies and the keyslots
area) to FILE, as cryptsetup luksHeaderBackup does. Anyone with FILE and a
passphrase that was valid at backup time can unlock the volume: keep it safe.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return usageError{errors.New("--header-backup-file is required")}
			}
			d, h, err := openHeader(cmd, args[0])
			if err != nil {
				return err
			}
			defer d.close()
			n := int64(h.Metadata.Segments[0].Offset)
			buf := make([]byte, n)
			if _, err := d.f.ReadAt(buf, 0); err != nil {
				return err
			}
			out, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o400)
			if err != nil {
				return fmt.Errorf("create backup file (it must not exist yet): %w", err)
			}
			if _, err := out.Write(buf); err != nil {
				out.Close()
				os.Remove(file)
				return err
			}
			return out.Close()
		},
	}
	cmd.Flags().StringVar(&file, "header-backup-file", "", "file to write (must not exist)")
	return cmd
}

func newLUKSHeaderRestoreCmd() *cobra.Command {
	var (
		file  string
		batch bool
	)
	cmd := &cobra.Command{
		Use:   "header-restore DEVICE --header-backup-file FILE",
		Short: "Write a header backup back to DEVICE",
		Long: `Replace the header and keyslots of DEVICE with those in FILE (made by
header-backup or cryptsetup luksHeaderBackup). The backup must be a valid LUKS2
header with the same data offset; DEVICE's current keyslots are lost.

Onto anything but the backup's own volume (another LUKS2 volume, a file
system, a LUKS1 header, a damaged or blank device) the restore asks for
confirmation on a terminal, or needs --batch-mode, as cryptsetup does. The
keyslot areas are written before the header copies, each step synced, so an
interruption leaves the old header or the backup's.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return usageError{errors.New("--header-backup-file is required")}
			}
			buf, err := readFileLimited(file, maxBackupSize)
			if err != nil {
				return fmt.Errorf("read header backup: %w", err)
			}
			if len(buf) > maxBackupSize {
				return fmt.Errorf("%s is larger than %d MiB: not a header backup", file, maxBackupSize>>20)
			}
			bh, err := luks2.CheckBackup(buf)
			if err != nil {
				return fmt.Errorf("%s is not a valid LUKS2 header backup: %w", file, err)
			}
			d, err := openDevice(args[0], true)
			if err != nil {
				return err
			}
			defer d.close()
			if d.size < int64(len(buf)) {
				return fmt.Errorf("%s holds %d bytes, less than the %d-byte header backup", args[0], d.size, len(buf))
			}
			if err := confirmRestore(cmd, d, args[0], bh, batch); err != nil {
				return err
			}
			if err := luks2.Restore(d.f, buf); err != nil {
				return fmt.Errorf("restore the header of %s: %w", args[0], err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "header-backup-file", "", "the backup to restore")
	cmd.Flags().BoolVarP(&batch, "batch-mode", "q", false, "do not ask before restoring over anything but the backup's own volume")
	return cmd
}

// maxBackupSize bounds a header backup: the data offset of a LUKS2 volume
// with the largest metadata and a generous keyslots area.
const maxBackupSize = 1 << 30

// confirmRestore lets header-restore overwrite the backup's own volume (a
// LUKS2 header with its UUID and data offset) without asking, refuses a
// LUKS2 volume with another data offset, and asks for anything else.
func confirmRestore(cmd *cobra.Command, d *device, path string, bh *luks2.Header, batch bool) error {
	h, _, err := luks2.Read(d.f)
	if err == nil {
		if off, want := h.Metadata.Segments[0].Offset, bh.Metadata.Segments[0].Offset; off != want {
			return fmt.Errorf("data offset of %s (%d) differs from the backup's (%d): its data would be read from the wrong place", path, off, want)
		}
		if h.UUID == bh.UUID {
			return nil
		}
	}
	if batch {
		return nil
	}
	var problem string
	switch what := describeDevice(d.f); {
	case err == nil:
		problem = fmt.Sprintf("%s holds another LUKS2 volume (UUID %s; the backup is of %s)", path, h.UUID, bh.UUID)
	case !errors.Is(err, luks2.ErrNotLUKS2):
		problem = fmt.Sprintf("%s holds a damaged LUKS2 header (%v), which may not be the backup's volume", path, err)
	case what != "":
		problem = fmt.Sprintf("%s does not contain a LUKS2 header (found: %s)", path, what)
	default:
		problem = fmt.Sprintf("%s does not contain a LUKS2 header", path)
	}
	return confirm(cmd, problem, "Replacing the header can destroy data on that device.")
}

// describeDevice names what probe finds on a device, telling LUKS1 apart.
func describeDevice(r io.ReaderAt) string {
	what, _ := probe.Identify(r)
	if what == "LUKS" {
		v := make([]byte, 2)
		if n, _ := r.ReadAt(v, 6); n == 2 && v[0] == 0 && v[1] == 1 {
			return "LUKS1 header"
		}
	}
	if what == "" {
		return ""
	}
	return what + " signature"
}

// maxTokenSize bounds a token read by token import: it must fit a JSON
// area (at most 4 MiB), next to the rest of the metadata.
const maxTokenSize = 1 << 20

// readTokenInput reads a token from path, or from stdin when path is "".
func readTokenInput(stdin io.Reader, path string) ([]byte, error) {
	name := "standard input"
	var b []byte
	var err error
	if path != "" {
		name = path
		b, err = readFileLimited(path, maxTokenSize)
	} else {
		b, err = io.ReadAll(io.LimitReader(stdin, maxTokenSize+1))
	}
	if err != nil {
		return nil, fmt.Errorf("read token: %w", err)
	}
	if len(b) > maxTokenSize {
		return nil, fmt.Errorf("the token in %s is larger than 1 MiB, more than a LUKS2 header holds", name)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, fmt.Errorf("the token in %s is empty", name)
	}
	return b, nil
}
