package provision

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/google/go-tpm/tpm2/transport"
	"golang.org/x/sys/unix"

	"github.com/confidisk/confidisk/activate"
	"github.com/confidisk/confidisk/attest"
	"github.com/confidisk/confidisk/broker/client"
	"github.com/confidisk/confidisk/dm"
	"github.com/confidisk/confidisk/enroll"
	"github.com/confidisk/confidisk/gpt"
	"github.com/confidisk/confidisk/integrity"
	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/probe"
	"github.com/confidisk/confidisk/tpm"
	"github.com/confidisk/confidisk/verity"
)

// Names of the device-mapper devices and mount points boot creates.
const (
	VerityName = "root"
	// UsrVerityName is the verity /usr of usrhash=.
	UsrVerityName = "usr"
	StateName     = "state"
	runDir        = "/run/confidisk"
	lowerDir      = runDir + "/verity-root"
	stateDir      = runDir + "/state"
)

// Options tune [Boot].
type Options struct {
	Config Config
	// Log receives what boot does, line by line (the console).
	Log io.Writer
	// Checkpoint, when set, is called after each durable step of
	// provisioning (and with "unlocked" and "mounted" on every boot); the
	// lab uses it to cut the power at a named point.
	Checkpoint func(point string)
	// MeasureLog is systemd's userspace measurement log ("" for its default).
	MeasureLog string
	// FirmwareLog is the TCG firmware event log sent with evidence (""
	// for attest.DefaultFirmwareLog, "-" for none).
	FirmwareLog string
	// Mkfs is the mkfs.ext4 program (default: found in PATH).
	Mkfs string
	// TPM, when set, is used instead of opening Config.TPM.
	TPM transport.TPM
	// TEE, when set, gives evidence its SEV-SNP/TDX report instead of the
	// hardware Config.TEE selects.
	TEE attest.TEEReporter
}

// Result says what a boot did.
type Result struct {
	FirstBoot     bool
	PreEncrypted  bool // the volume was pre-encrypted offline (its first boot, when FirstBoot)
	RestartedFrom Step // a previous provisioning that was interrupted before sealing
	ResumedFrom   Step // a previous provisioning that was finished this boot
	VolumeUUID    string
	KeyID         string // the fixation value (fixate-volume-key=) of the volume
	Root          string
	Layout        *Layout
	Freshness     *Freshness
	Clone         *CloneProgress `json:",omitempty"` // dm-clone mode
}

// Layout are the partitions boot found.
type Layout struct {
	Disk, RootData, RootHash, State string
	// StatePartUUID is the state partition's GPT partition UUID.
	StatePartUUID string `json:",omitempty"`
}

// errRecovery wraps failures to unlock a provisioned volume with the
// recovery instructions.
func errRecovery(err error) error {
	return fmt.Errorf("%w\nThe state volume was NOT modified. To recover it, the operator unwraps its recovery "+
		"passphrase with the operator key (confidisk luks recover DEVICE --operator-key KEY, from a copy of the header) "+
		"and opens it from a rescue system: confidisk luks open DEVICE state (or cryptsetup open). "+
		"Never reformat it unless its data may be lost", err)
}

type booter struct {
	o   Options
	cfg Config
	dm  *dm.Client
	tpm transport.TPM
	res *Result
	// tee is the guest's SEV-SNP/TDX reporter, nil without one.
	tee attest.TEEReporter
	// broker is the broker client when one is configured.
	broker *client.Client
	// pending is the broker half of this boot's freshness advance.
	pending *brokerAdvance
	// state is the state partition's device.
	state string
	// want are the settings this boot's configuration asks for; record
	// are those the provisioning token is to hold (want on first boot,
	// the provisioned ones with what want adds on later boots).
	want, record *Settings
	// recoveryPub is the operator's recovery public key (nil for none).
	recoveryPub *ecdh.PublicKey
	// undo is what a failed boot removes: its mappings and mounts.
	undo cleanup
	// verity is the verity root's device once mapped, veritySectors its
	// size.
	verity        string
	veritySectors uint64
	// pt is the provisioning token of the state volume once it is
	// unlocked (authenticated) or provisioned.
	pt *provisionToken
}

func (b *booter) logf(format string, args ...any) {
	if b.o.Log != nil {
		fmt.Fprintf(b.o.Log, "confidisk boot: "+format+"\n", args...)
	}
}

func (b *booter) point(p string) {
	if b.o.Checkpoint != nil {
		b.o.Checkpoint(p)
	}
}

// Boot runs the boot flow: verity root, state volume (provisioned on first
// boot), PCR 15, read-write root. It never reformats a provisioned volume:
// when unlocking fails it returns an error that says how to recover. A
// failed boot leaves nothing mapped or mounted.
func Boot(ctx context.Context, o Options) (res *Result, err error) {
	cfg := o.Config
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := &booter{o: o, cfg: cfg, res: &Result{Root: cfg.Root}}
	var lay *Layout
	if err := b.waitFor(ctx, "the root, root verity and state partitions", func() (err error) {
		lay, err = discover(cfg)
		return err
	}); err != nil {
		return nil, err
	}
	b.res.Layout = lay
	if lay.RootData == "" {
		b.logf("no root partitions for roothash=; state %s on %s (dm-clone mode: a hydrated root needs none)", lay.State, lay.Disk)
	} else {
		b.logf("root %s (hash %s), state %s on %s", lay.RootData, lay.RootHash, lay.State, lay.Disk)
	}
	if err := b.refuseOtherOpeners(lay); err != nil {
		return nil, err
	}
	if b.dm, err = dm.Open(dm.DefaultControl); err != nil {
		return nil, fmt.Errorf("device-mapper: %w", err)
	}
	defer b.dm.Close()
	defer func() { // before the device-mapper client closes
		if err != nil {
			b.undo.run(b.logf)
		}
	}()
	if cfg.RW != RWClone { // clone mode maps it only while the clone needs it
		if err := b.verityRoot(lay); err != nil {
			return nil, err
		}
	}
	closeAll, err := b.connect(ctx)
	defer closeAll()
	if err != nil {
		return nil, err
	}
	b.state = lay.State
	h, vk, err := b.stateVolume(ctx, lay.State)
	if err != nil {
		return nil, err
	}
	if err := b.opened(ctx, lay.State, h, vk); err != nil {
		return nil, err // nothing may use a volume that failed its checks
	}
	if cfg.RW == RWClone {
		if err := b.cloneRoot(lay, h, vk); err != nil {
			return nil, err
		}
	}
	if err := b.mountRoot(); err != nil {
		return nil, err
	}
	b.point("mounted")
	return b.res, nil
}

// refuseOtherOpeners refuses a boot in which a crypttab line or a
// command-line option would have systemd-cryptsetup open the state volume
// besides confidisk, without its checks (see [OtherOpeners]).
func (b *booter) refuseOtherOpeners(lay *Layout) error {
	const name = "/etc/crypttab" // the initrd's: a missing file names nothing
	crypttab, err := os.ReadFile(name)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read %s: %w", name, err)
	}
	v := VolumeNames{Device: lay.State, PartUUID: lay.StatePartUUID, PartLabel: b.cfg.StateLabel}
	if f, err := os.Open(lay.State); err == nil {
		if h, _, err := luks2.Read(f); err == nil { // only a name here: its checks come later
			v.LUKSUUID = h.UUID
		}
		f.Close()
	}
	if others := OtherOpeners(v, crypttab, b.cfg.LUKSOptions); len(others) > 0 {
		return fmt.Errorf("%w: the state volume %s is also named by %s: systemd-cryptsetup would open it without confidisk's checks; remove the entry",
			ErrBadConfig, lay.State, strings.Join(others, " and "))
	}
	return nil
}

// connect opens what the boot talks to — the vTPM (waiting for its device),
// the broker, the TEE — and reads the settings and the recovery key; the
// returned function closes them.
func (b *booter) connect(ctx context.Context) (func(), error) {
	var closers []func() error
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	cfg := &b.cfg
	b.tpm = b.o.TPM
	if b.tpm == nil {
		dev, err := tpm.ParseDevice(cfg.TPM)
		if err != nil {
			return closeAll, err
		}
		if dev.Path != "" {
			if err := b.waitFor(ctx, "the TPM "+dev.Path, deviceExists(dev.Path)); err != nil {
				return closeAll, err
			}
		}
		tc, err := tpm.Open(dev)
		if err != nil {
			return closeAll, fmt.Errorf("open the vTPM %s: %w", cfg.TPM, err)
		}
		closers = append(closers, tc.Close)
		b.tpm = tc
	}
	if cfg.Broker != "" {
		var err error
		if b.broker, err = client.Dial(cfg.Broker, cfg.BrokerCA, "", ""); err != nil {
			return closeAll, err
		}
		closers = append(closers, func() error { b.broker.Close(); return nil })
	}
	teeMode := resolveTEE(cfg.TEE)
	var err error
	if b.tee = b.o.TEE; b.tee == nil {
		if b.tee, err = openTEE(teeMode); err != nil {
			return closeAll, fmt.Errorf("confidisk.tee=%s: %w", cfg.TEE, err)
		}
	} else if teeMode == "none" {
		teeMode = "injected"
	}
	if b.want, err = settingsOf(cfg, teeMode); err != nil {
		return closeAll, err
	}
	b.recoveryPub, err = loadRecoveryKey(cfg)
	return closeAll, err
}

// opened runs what follows the activation of the state volume: the PCR 15
// measurement, the creation record on first boot, the broker.
func (b *booter) opened(ctx context.Context, dev string, h *luks2.Header, vk []byte) error {
	if _, err := tpm.MeasureVolumeKey(b.tpm, vk, StateName, h.UUID, tpm.MeasureOptions{LogPath: b.o.MeasureLog}); err != nil {
		return fmt.Errorf("measure the volume key into PCR 15: %w", err)
	}
	b.point("measured")
	if b.res.FirstBoot || b.res.ResumedFrom != "" {
		if err := b.storeCreationRecord(dev, h); err != nil {
			return err
		}
	}
	return b.reportToBroker(ctx, h)
}

// StateHeaderSize is the LUKS2 metadata size of a state volume
// (cryptsetup's --luks2-metadata-size): 256 KiB instead of the default
// 16 KiB, because the creation record token carries the firmware's TCG
// event log, which under UEFI firmware (OVMF: about 20 KiB in JSON) does not
// fit in the default 12 KiB JSON area. The data still starts at 16 MiB.
const StateHeaderSize = 256 << 10

// CreationTokenType is the LUKS2 token that holds the creation record: the
// evidence (a vTPM quote of PCR 15 and the policy PCRs, with systemd's
// measurement log) whose qualifying data is the volume key id, made right
// after first boot measured the new volume (the idea of systemd issue
// 40410). A verifier checks it with attest.VerifyCreation.
const CreationTokenType = "confidisk-creation"

// storeCreationRecord quotes the vTPM and keeps the record in the header.
func (b *booter) storeCreationRecord(dev string, h *luks2.Header) error {
	iss, err := b.issuer()
	if err != nil {
		return fmt.Errorf("creation record: %w", err)
	}
	rec, err := iss.IssueCreation(context.Background(), b.res.KeyID, h.UUID, StateName)
	if err != nil {
		return fmt.Errorf("creation record: %w", err)
	}
	raw, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	tok, err := json.Marshal(map[string]any{"type": CreationTokenType, "keyslots": []string{}, "record": json.RawMessage(raw)})
	if err != nil {
		return err
	}
	for id, t := range h.Metadata.Tokens {
		var th luks2.TokenHeader
		if json.Unmarshal(t, &th) == nil && th.Type == CreationTokenType {
			_ = h.RemoveToken(id)
		}
	}
	if _, err := h.AddToken(tok, -1); err != nil {
		return fmt.Errorf("creation record: %w", err)
	}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := h.Write(f); err != nil {
		return fmt.Errorf("store the creation record: %w", err)
	}
	b.logf("creation record stored (vTPM quote over the volume key id)")
	return f.Sync()
}

// discover finds the root data, root verity and state partitions: the
// data and hash partitions by the UUIDs the Discoverable Partitions
// Specification derives from the root hash (falling back to their type when
// only one of it exists), the state partition by its GPT label.
func discover(cfg Config) (*Layout, error) {
	dataUUID, hashUUID := gpt.VerityUUIDs(cfg.RootHash)
	dataType, hashType, what := gpt.TypeRootX86_64, gpt.TypeRootVerityX86_64, "root"
	if cfg.Usr {
		dataType, hashType, what = gpt.TypeUsrX86_64, gpt.TypeUsrVerityX86_64, "usr"
	}
	entries, err := os.ReadDir("/sys/block")
	if err != nil {
		return nil, err
	}
	var tried []string
	var stateOnly *Layout
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, "loop") || strings.HasPrefix(name, "dm-") || strings.HasPrefix(name, "ram") {
			continue
		}
		disk := "/dev/" + name
		tried = append(tried, disk)
		t, err := readTable(disk)
		if err != nil {
			continue
		}
		pick := func(typ, uuid gpt.GUID) *gpt.Partition {
			var byType []gpt.Partition
			for _, p := range t.Partitions {
				if p.Type == typ && p.UUID == uuid {
					return &p
				}
				if p.Type == typ {
					byType = append(byType, p)
				}
			}
			if len(byType) == 1 {
				return &byType[0]
			}
			return nil
		}
		data, hash := pick(dataType, dataUUID), pick(hashType, hashUUID)
		var states []gpt.Partition
		for _, p := range t.Partitions {
			if p.Name == cfg.StateLabel {
				states = append(states, p)
			}
		}
		if data == nil || hash == nil {
			// A hydrated clone needs no verity source: the image may drop it.
			if cfg.RW == RWClone && len(states) == 1 && stateOnly == nil {
				stateOnly = &Layout{Disk: disk, State: partPath(disk, states[0].Index), StatePartUUID: states[0].UUID.String()}
			}
			continue
		}
		if len(states) != 1 {
			return nil, fmt.Errorf("%s: want one partition labelled %q for the state volume, found %d", disk, cfg.StateLabel, len(states))
		}
		return &Layout{Disk: disk, RootData: partPath(disk, data.Index), RootHash: partPath(disk, hash.Index),
			State: partPath(disk, states[0].Index), StatePartUUID: states[0].UUID.String()}, nil
	}
	if stateOnly != nil {
		return stateOnly, nil
	}
	return nil, fmt.Errorf("no disk with a %[1]s partition %[2]s and a %[1]s verity partition %[3]s (as %[1]shash= implies); looked at %[4]v", what, dataUUID, hashUUID, tried)
}

func readTable(disk string) (*gpt.Table, error) {
	f, err := os.Open(disk)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, err
	}
	ss, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKSSZGET)
	if err != nil {
		ss = 512
	}
	return gpt.Read(f, size, ss)
}

// partPath is the device node of partition n of disk (/dev/vda3, /dev/nvme0n1p3).
func partPath(disk string, n int) string {
	if c := disk[len(disk)-1]; c >= '0' && c <= '9' {
		return fmt.Sprintf("%sp%d", disk, n)
	}
	return fmt.Sprintf("%s%d", disk, n)
}

// verityRoot maps and mounts the verity root read-only.
func (b *booter) verityRoot(lay *Layout) error {
	path, _, err := b.mapVerity(lay)
	if err != nil {
		return err
	}
	fstype, err := fsType(path)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(lowerDir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(path, lowerDir, fstype, unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("mount the verity root (%s) at %s: %w", fstype, lowerDir, err)
	}
	b.undo.add(func() error { return unix.Unmount(lowerDir, 0) })
	b.logf("verity root %s mounted read-only (%s)", path, fstype)
	return nil
}

// mapVerity maps the verity root (once) and returns its device and its
// size in 512-byte sectors.
func (b *booter) mapVerity(lay *Layout) (string, uint64, error) {
	if b.verity != "" {
		return b.verity, b.veritySectors, nil
	}
	if lay.RootData == "" {
		return "", 0, fmt.Errorf("no root and root verity partitions for roothash=%x", b.cfg.RootHash)
	}
	hf, err := os.Open(lay.RootHash)
	if err != nil {
		return "", 0, err
	}
	sb, err := verity.ReadSuperblock(hf, 0)
	hf.Close()
	if err != nil {
		return "", 0, fmt.Errorf("root verity partition %s: %w", lay.RootHash, err)
	}
	p := sb.Params(0)
	path, err := activate.Verity(b.dm, b.verityName(), lay.RootData, lay.RootHash, p, b.cfg.RootHash, activate.VerityOptions{})
	if err != nil {
		return "", 0, fmt.Errorf("verity root: %w", err)
	}
	b.undo.add(func() error { return b.unmapVerity() })
	b.verity, b.veritySectors = path, p.DataBlocks*uint64(p.DataBlockSize)/512
	return path, b.veritySectors, nil
}

// unmapVerity removes the verity root's mapping if it is there.
func (b *booter) unmapVerity() error {
	if b.verity == "" {
		return nil
	}
	b.verity = ""
	return b.dm.Remove(b.verityName())
}

// verityName is the device-mapper name of the verity partition: "root",
// or "usr" with usrhash=.
func (b *booter) verityName() string {
	if b.cfg.Usr {
		return UsrVerityName
	}
	return VerityName
}

func fsType(dev string) (string, error) {
	f, err := os.Open(dev)
	if err != nil {
		return "", err
	}
	defer f.Close()
	what, err := probe.Identify(f)
	if err != nil {
		return "", err
	}
	if t := probe.MountType(what); t != "" {
		return t, nil
	}
	return "", fmt.Errorf("%s holds no file system this boot can mount (found %q)", dev, what)
}

// stateVolume unlocks the state volume, provisioning it first when the
// partition is blank (or its provisioning was interrupted before the key
// was sealed). It returns the header and the volume key, with the volume
// mapped at /dev/mapper/state.
func (b *booter) stateVolume(ctx context.Context, dev string) (*luks2.Header, []byte, error) {
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	blank, err := probe.IsBlank(f, 1<<20)
	if err != nil {
		return nil, nil, err
	}
	if blank {
		if b.cfg.StateKey.PreEncrypted() {
			return nil, nil, fmt.Errorf("%w: confidisk.state-key=%s expects a pre-encrypted state volume, but %s is blank; refusing to self-encrypt it",
				ErrKeySource, b.cfg.StateKey, dev)
		}
		b.logf("state partition %s is blank: first boot, provisioning", dev)
		return b.provision(ctx, f, dev)
	}
	h, rep, err := luks2.Read(f)
	if err != nil {
		what, _ := probe.Identify(f)
		if what == "" {
			what = "unrecognised data"
		}
		return nil, nil, fmt.Errorf("%w: %s holds %s (%v); refusing to touch it", ErrNotOurs, dev, what, err)
	}
	if rep.NeedsRepair() {
		b.logf("state volume header: one copy damaged or stale (%v / %v); using the valid one", rep.PrimaryErr, rep.SecondaryErr)
	}
	pt, _, err := findProvisionToken(h)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w; refusing to touch it", dev, err)
	}
	b.res.VolumeUUID = h.UUID
	if pt.Origin == OriginPreEncrypted && !pt.Step.AtLeast(StepSealed) {
		return b.preEncryptedFirstBoot(ctx, f, dev, h, pt)
	}
	if !pt.Step.AtLeast(StepSealed) {
		if b.cfg.StateKey.PreEncrypted() {
			return nil, nil, fmt.Errorf("%w: confidisk.state-key=%s expects a pre-encrypted volume, but %s is a self-encryption interrupted at step %q; refusing to format it again",
				ErrKeySource, b.cfg.StateKey, dev, pt.Step)
		}
		if err := b.checkNotRewound(h, pt); err != nil {
			return nil, nil, errRecovery(fmt.Errorf("state volume %s: %w", dev, err))
		}
		b.logf("provisioning was interrupted at step %q, before the key was sealed: starting over", pt.Step)
		b.res.RestartedFrom = pt.Step
		return b.provision(ctx, f, dev)
	}
	if err := checkFloor(h, &b.cfg); err != nil {
		return nil, nil, errRecovery(fmt.Errorf("state volume %s: %w", dev, err))
	}
	vk, err := b.unlock(ctx, f, h)
	if err != nil {
		return nil, nil, err
	}
	if err := b.raiseFloor(); err != nil {
		return nil, nil, fmt.Errorf("security version floor: %w", err)
	}
	b.point("unlocked")
	keyID := tpm.FixateValue(vk, StateName, h.UUID)
	b.res.KeyID = keyID
	if pt.Step.AtLeast(StepFixated) {
		if err := checkFixation(b.tpm, keyID); err != nil {
			return nil, nil, errRecovery(fmt.Errorf("state volume %s: %w", dev, err))
		}
	}
	if err := b.checkProvisioned(f, h, pt, vk); err != nil {
		return nil, nil, errRecovery(fmt.Errorf("state volume %s: %w", dev, err))
	}
	if pt.Clone != nil && !pt.Clone.Hydrated { // before freshness writes the header
		if err := pt.Clone.checkRoot(b.cfg.RootHash); err != nil {
			return nil, nil, err
		}
	}
	b.pt = pt
	if pt.Step != StepComplete {
		b.logf("provisioning was interrupted at step %q, after the key was sealed: finishing it", pt.Step)
		b.res.ResumedFrom = pt.Step
		if err := b.finish(f, h, vk, pt); err != nil {
			return nil, nil, err
		}
	}
	fr, err := b.advanceFreshness(ctx, b.tpm, f, h, vk, false)
	if err != nil {
		return nil, nil, errRecovery(fmt.Errorf("state volume %s: %w", dev, err))
	}
	b.res.Freshness = fr
	if err := b.openState(dev, h, vk); err != nil {
		return nil, nil, err
	}
	b.logf("state volume %s unlocked (volume key id %s…)", h.UUID, keyID[:16])
	return h, vk, nil
}

// openState maps the state volume (and unmaps it if the boot fails later).
func (b *booter) openState(dev string, h *luks2.Header, vk []byte) error {
	if _, err := activate.LUKS(b.dm, StateName, dev, h, vk, activate.LUKSOptions{}); err != nil {
		return fmt.Errorf("open the state volume: %w", err)
	}
	b.undo.add(func() error { return activate.CloseLUKS(b.dm, StateName, true) })
	return nil
}

// NewRecoveryPassphrase returns a random recovery passphrase in systemd's recovery key
// alphabet (modhex, 8 groups of 8).
func NewRecoveryPassphrase() (string, error) {
	const modhex = "cbdefghijklnrtuv"
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	var sb strings.Builder
	for i, c := range raw {
		if i > 0 && i%4 == 0 {
			sb.WriteByte('-')
		}
		sb.WriteByte(modhex[c>>4])
		sb.WriteByte(modhex[c&15])
	}
	return sb.String(), nil
}

// provision formats the state partition and runs every provisioning step.
func (b *booter) provision(ctx context.Context, f *os.File, dev string) (*luks2.Header, []byte, error) {
	b.res.FirstBoot = true
	b.record = b.want
	var clone *cloneRecord
	if b.cfg.RW == RWClone { // checked before the first write
		var err error
		if clone, err = b.cloneSource(); err != nil {
			return nil, nil, err
		}
	}
	h, vk, pt, err := b.format(f)
	if err != nil {
		return nil, nil, err
	}
	b.pt = pt
	mode := activate.InitFull
	if b.cfg.FastInit {
		mode = activate.InitFast
	}
	if err := activate.InitIntegrityTags(b.dm, dev, h, vk, mode, nil); err != nil {
		return nil, nil, err
	}
	if err := b.writeStep(f, h, vk, pt, StepInitialised); err != nil {
		return nil, nil, err
	}
	if clone != nil {
		err = b.prepareClone(dev, h, vk, clone)
		pt.Clone = clone
	} else {
		err = b.fileSystem(ctx, dev, h, vk)
	}
	if err != nil {
		return nil, nil, err
	}
	if err := b.writeStep(f, h, vk, pt, StepFilesystem); err != nil {
		return nil, nil, err
	}
	// The first freshness epoch, before sealing: a failure or power cut
	// until its token is written (the vTPM counter already started, the
	// broker unreachable) then leads to a new provisioning, never to a
	// sealed volume without an epoch, which later boots would refuse.
	fr, err := b.advanceFreshness(ctx, b.tpm, f, h, vk, true)
	if err != nil {
		return nil, nil, fmt.Errorf("start the freshness epoch: %w", err)
	}
	b.res.Freshness = fr
	if err := b.raiseFloor(); err != nil {
		return nil, nil, fmt.Errorf("security version floor: %w", err)
	}
	if err := b.seal(f, h, vk, pt); err != nil {
		return nil, nil, err
	}
	b.res.KeyID = tpm.FixateValue(vk, StateName, h.UUID)
	if err := b.finish(f, h, vk, pt); err != nil {
		return nil, nil, err
	}
	if err := b.openState(dev, h, vk); err != nil {
		return nil, nil, err
	}
	return h, vk, nil
}

// format writes the new LUKS2 header with integrity (StepFormatted): the
// volume key from the kernel RNG (getrandom, inside luks2.Format), keyslot
// 0 with the recovery passphrase, the provisioning token and, with an
// operator key, the recovery token.
func (b *booter) format(f *os.File) (*luks2.Header, []byte, *provisionToken, error) {
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, nil, nil, err
	}
	uuid, err := luks2.NewUUID()
	if err != nil {
		return nil, nil, nil, err
	}
	recovery, err := NewRecoveryPassphrase()
	if err != nil {
		return nil, nil, nil, err
	}
	pt := &provisionToken{Type: TokenType, Keyslots: []string{}, Version: tokenVersion, Step: StepFormatted, RecoveryKeyslot: -1, RW: b.cfg.RW}
	tokens, err := b.recoveryTokens(pt, uuid, recovery)
	if err != nil {
		return nil, nil, nil, err
	}
	h, vk, err := luks2.Format(f, uint64(size), []byte(recovery), luks2.FormatOptions{
		Integrity: b.cfg.Integrity, Cipher: cipherFor(b.cfg.Integrity),
		PBKDF: luks2.PBKDF{Type: "pbkdf2", Hash: "sha512", Iterations: 1000}, // high-entropy passphrase
		Label: b.cfg.StateLabel, Subsystem: "confidisk", UUID: uuid, Tokens: tokens,
		HdrSize: StateHeaderSize,
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("format the state volume: %w", err)
	}
	if err := f.Sync(); err != nil {
		return nil, nil, nil, err
	}
	b.res.VolumeUUID = h.UUID
	b.reportRecovery(h.UUID, recovery)
	b.point(string(StepFormatted))
	return h, vk, pt, nil
}

// fileSystem makes the state file system through a temporary mapping.
func (b *booter) fileSystem(ctx context.Context, dev string, h *luks2.Header, vk []byte) error {
	path, err := activate.LUKS(b.dm, StateName, dev, h, vk, activate.LUKSOptions{})
	if err != nil {
		return fmt.Errorf("open the new state volume: %w", err)
	}
	if err := b.makeFS(ctx, path); err != nil {
		return errors.Join(err, activate.CloseLUKS(b.dm, StateName, true))
	}
	return activate.CloseLUKS(b.dm, StateName, true)
}

// uki11 is the PCR a signed UKI's .pcrsig covers (TPM2_PCR_KERNEL_BOOT).
const uki11 = 11

// readOptional reads a file that may be absent (nil, nil).
func readOptional(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// seal enrolls the volume key with the vTPM (StepSealed): sealed to the
// policy PCRs at their current values, and to PCR 15 at its value before
// any volume key is measured (zeros), so that once this boot measures the
// volume nothing can unseal the key again until reboot. The keyslot, its
// token, the removal of an unrecoverable keyslot 0 and the step go to disk
// in one header write, so a header with a systemd-tpm2 token is always at
// StepSealed or later (checkNotRewound relies on it).
func (b *booter) seal(f *os.File, h *luks2.Header, vk []byte, pt *provisionToken) error {
	key, err := readOptional(b.cfg.PCRPublicKey)
	if err != nil {
		return err
	}
	if key != nil {
		// A signed UKI: PCR 11 is bound too, as its vendor signs it, so
		// that any UKI the vendor signs unseals and nothing else does.
		b.logf("sealing also to pcr %d as signed by the uki's key (%s)", uki11, b.cfg.PCRPublicKey)
	}
	so := stateSealOptions(b.cfg.PCRs, key)
	if _, _, err := enroll.AddEnrollment(b.tpm, f, h, vk, enroll.EnrollOptions{
		SealOptions: so, Keyslot: -1, TokenID: -1,
	}); err != nil {
		return fmt.Errorf("seal the volume key to the vTPM: %w", err)
	}
	if pt.RecoveryKeyslot < 0 && pt.Origin == "" {
		if err := h.KillKeyslot(f, 0, false); err != nil {
			return fmt.Errorf("remove the unrecoverable keyslot 0: %w", err)
		}
	}
	return b.writeStep(f, h, vk, pt, StepSealed)
}

// finish runs the steps after sealing: store the fixation digest (the
// volume's key id, b.res.KeyID), mark the provisioning complete.
// The fixation digest is written only while the volume is not yet at
// StepFixated (a volume that is has had its digest checked instead).
func (b *booter) finish(f *os.File, h *luks2.Header, vk []byte, pt *provisionToken) error {
	if !pt.Step.AtLeast(StepFixated) {
		digest, err := hex.DecodeString(b.res.KeyID)
		if err != nil {
			return err
		}
		if err := writeFixation(b.tpm, digest); err != nil {
			return fmt.Errorf("store the fixation digest: %w", err)
		}
		if err := b.writeStep(f, h, vk, pt, StepFixated); err != nil {
			return err
		}
	}
	return b.writeStep(f, h, vk, pt, StepComplete)
}

// writeStep writes step into the provisioning token, authenticated under
// the volume key vk with the header as it is now, and syncs it.
func (b *booter) writeStep(f *os.File, h *luks2.Header, vk []byte, pt *provisionToken, step Step) error {
	pt.Step = step
	pt.Settings = b.record
	var sb *integrity.Superblock
	if step.AtLeast(StepInitialised) {
		var err error
		if sb, err = activate.IntegritySuperblock(b.state, h); err != nil {
			return fmt.Errorf("record provisioning step %s: %w", step, err)
		}
	}
	if err := authenticate(pt, h, sb, vk); err != nil {
		return err
	}
	if err := setProvisionToken(h, pt); err != nil {
		return err
	}
	if err := h.Write(f); err != nil {
		return fmt.Errorf("record provisioning step %s: %w", step, err)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	b.logf("provisioning step %s recorded", step)
	b.point(string(step))
	return nil
}

func cipherFor(integrity string) string {
	if integrity == "aead" {
		return "aes-gcm-random"
	}
	return ""
}

// makeFS makes the state file system; in copy mode it also copies the
// verity root into it.
func (b *booter) makeFS(ctx context.Context, dev string) error {
	mkfs := b.o.Mkfs
	if mkfs == "" {
		mkfs = "mkfs.ext4"
	}
	args := []string{"-q", "-F", "-L", "state", "-E", "nodiscard,lazy_itable_init=1"}
	if b.cfg.FastInit {
		// Only the ends of the volume have valid integrity tags: any read of
		// another sector before it is written fails. mke2fs reads what it
		// writes partially (the 1 KiB backup superblocks), and ext4 may read
		// inode-table blocks it did not zero yet. So: no backup superblocks,
		// and inode tables and journal written in full now (a few percent
		// of the volume instead of all of it).
		args = []string{"-q", "-F", "-L", "state", "-O", "sparse_super2",
			"-E", "nodiscard,num_backup_sb=0,lazy_itable_init=0,lazy_journal_init=0"}
	}
	cmd := exec.CommandContext(ctx, mkfs, append(args, dev)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", mkfs, dev, err, strings.TrimSpace(string(out)))
	}
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(dev, stateDir, "ext4", 0, ""); err != nil {
		return fmt.Errorf("mount the new state file system: %w", err)
	}
	var err error
	switch b.cfg.RW {
	case RWOverlay:
		err = errors.Join(os.MkdirAll(stateDir+"/overlay/upper", 0o755), os.MkdirAll(stateDir+"/overlay/work", 0o755))
	case RWCopy:
		b.logf("copying the verity root into the state volume")
		err = copyTree(lowerDir, stateDir+"/root")
	case RWUsrOverlay, RWUsr:
		b.logf("making the root file system on the state volume (usrhash=: /usr comes from verity)")
		err = makeRootSkeleton(stateDir+"/root", b.cfg.RW == RWUsrOverlay)
	}
	unix.Sync()
	return errors.Join(err, unix.Unmount(stateDir, 0))
}

// mountRoot mounts the read-write root at Config.Root.
func (b *booter) mountRoot() error {
	root := b.cfg.Root
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	if b.cfg.RW == RWClone {
		return b.mountCloneRoot()
	}
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("/dev/mapper/"+StateName, stateDir, "ext4", 0, ""); err != nil {
		return fmt.Errorf("mount the state volume: %w", err)
	}
	b.undo.add(func() error { return unix.Unmount(stateDir, 0) })
	switch b.cfg.RW {
	case RWOverlay:
		// A pre-encrypted volume's file system may come without them.
		if err := errors.Join(os.MkdirAll(stateDir+"/overlay/upper", 0o755), os.MkdirAll(stateDir+"/overlay/work", 0o755)); err != nil {
			return fmt.Errorf("the overlay's directories on the state volume: %w", err)
		}
		opts := fmt.Sprintf("lowerdir=%s,upperdir=%s/overlay/upper,workdir=%s/overlay/work", lowerDir, stateDir, stateDir)
		if err := unix.Mount("overlay", root, "overlay", 0, opts); err != nil {
			return fmt.Errorf("mount the overlay root: %w", err)
		}
	case RWCopy:
		if err := unix.Mount(stateDir+"/root", root, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind the copied root: %w", err)
		}
	case RWUsrOverlay, RWUsr:
		if err := b.mountUsrRoot(root); err != nil {
			return err
		}
	case RWNone:
		if err := unix.Mount(lowerDir, root, "", unix.MS_BIND, ""); err != nil {
			return err
		}
		if err := unix.Mount(stateDir, filepath.Join(root, "var"), "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind the state volume at /var: %w", err)
		}
	}
	b.logf("read-write root (%s) mounted at %s", b.cfg.RW, root)
	return nil
}

// SwitchRoot makes root the new / and executes init in it (what
// switch_root(8) does): move the mount, chroot, exec. Only PID 1 in an
// initramfs should call it.
func SwitchRoot(root, init string) error {
	if err := unix.Chdir(root); err != nil {
		return err
	}
	if err := unix.Mount(root, "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move %s to /: %w", root, err)
	}
	if err := unix.Chroot("."); err != nil {
		return err
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	return unix.Exec(init, []string{init}, os.Environ())
}
