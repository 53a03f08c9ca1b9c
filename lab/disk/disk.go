// Package disk builds the disks of the lab's boot scenarios and of the
// demo: a GPT disk laid out as the Discoverable Partitions Specification
// asks (root, root verity with UUIDs from the root hash, a blank "state"
// partition), and the volume a malicious host would swap in.
package disk

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/confidisk/confidisk/enroll"
	"github.com/confidisk/confidisk/gpt"
	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/tpm"
)

// Disk is a boot disk image.
type Disk struct {
	Path     string
	RootHash string
	State    gpt.Partition
}

// Build makes a disk in dir: an ext4 root holding the files of files
// (path → content), formatted with the confidisk binary bin; its verity
// partition; a 160 MiB blank state partition (two ext4 block groups, so that
// mkfs writes a second group's metadata).
func Build(dir, bin string, files map[string]string) (*Disk, error) {
	return BuildSized(dir, bin, files, 160<<20)
}

// BuildSized is [Build] with a state partition of stateSize bytes.
func BuildSized(dir, bin string, files map[string]string, stateSize int64) (*Disk, error) {
	return BuildRoot(dir, bin, files, 16<<20, stateSize)
}

// BuildRoot is [BuildSized] with an ext4 root file system of rootSize bytes
// (a multiple of 1 MiB; [Build]'s is 16 MiB) and a verity partition large
// enough for its hash tree (at least 1 MiB).
func BuildRoot(dir, bin string, files map[string]string, rootSize, stateSize int64) (*Disk, error) {
	tree := filepath.Join(dir, "tree")
	for p, c := range files {
		full := filepath.Join(tree, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			return nil, err
		}
	}
	return BuildTree(dir, bin, tree, rootSize, stateSize)
}

// BuildTree is [BuildRoot] with the root made from the directory tree as it
// is (modes, symbolic links and executables kept), e.g. a [lab.RootFS]
// whose /sbin/init a systemd initrd switches to.
func BuildTree(dir, bin, tree string, rootSize, stateSize int64) (*Disk, error) {
	if rootSize <= 0 || rootSize%(1<<20) != 0 {
		return nil, fmt.Errorf("root size %d is not a positive multiple of 1 MiB", rootSize)
	}
	if err := os.MkdirAll(filepath.Join(tree, "var"), 0o755); err != nil {
		return nil, err
	}
	rootImg, hashImg := filepath.Join(dir, "root.img"), filepath.Join(dir, "root.verity")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-b", "4096", "-d", tree, rootImg, fmt.Sprintf("%dM", rootSize>>20)).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mkfs.ext4: %w: %s", err, out)
	}
	out, err := exec.Command(bin, "verity", "format", rootImg, hashImg).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("verity format: %w: %s", err, out)
	}
	m := regexp.MustCompile(`(?m)^Root hash:\s+([0-9a-f]{64})$`).FindSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("no root hash in: %s", out)
	}
	d := &Disk{Path: filepath.Join(dir, "disk.img"), RootHash: string(m[1])}
	rh, _ := hex.DecodeString(d.RootHash)
	dataUUID, hashUUID := gpt.VerityUUIDs(rh)
	rootData, err := os.ReadFile(rootImg)
	if err != nil {
		return nil, err
	}
	hashData, err := os.ReadFile(hashImg)
	if err != nil {
		return nil, err
	}
	hashSize := max(1<<20, (int64(len(hashData))+1<<20-1)/(1<<20)*(1<<20))
	// 31 MiB for the GPT and alignment: 48 MiB besides the state partition
	// for Build's 16 MiB root.
	size := rootSize + hashSize + 31<<20 + stateSize
	f, err := os.Create(d.Path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return nil, err
	}
	tbl, err := gpt.New(size, 512)
	if err != nil {
		return nil, err
	}
	pr, err := tbl.Add(gpt.Partition{Type: gpt.TypeRootX86_64, UUID: dataUUID, Name: "root-x86-64", Size: int64(len(rootData))})
	if err != nil {
		return nil, err
	}
	ph, err := tbl.Add(gpt.Partition{Type: gpt.TypeRootVerityX86_64, UUID: hashUUID, Name: "root-x86-64-verity", Size: hashSize})
	if err != nil {
		return nil, err
	}
	if d.State, err = tbl.Add(gpt.Partition{Type: gpt.TypeVar, Name: "state", Size: stateSize}); err != nil {
		return nil, err
	}
	if err := tbl.Write(f, size); err != nil {
		return nil, err
	}
	if _, err := f.WriteAt(rootData, pr.Start); err != nil {
		return nil, err
	}
	if _, err := f.WriteAt(hashData, ph.Start); err != nil {
		return nil, err
	}
	return d, nil
}

// Cmdline is the kernel command line the lab boots the disk with.
func (d *Disk) Cmdline() []string {
	return []string{"roothash=" + d.RootHash, "confidisk.switch-root=0"}
}

// StateDevice is the state partition of the image as a device.
func (d *Disk) StateDevice() *Section {
	return &Section{Path: d.Path, Off: d.State.Start, Size: d.State.Size}
}

// Section is a byte range of a file used as a device.
type Section struct {
	Path      string
	Off, Size int64
}

// ReadAt reads within the section.
func (s *Section) ReadAt(p []byte, off int64) (int, error) {
	f, err := os.Open(s.Path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if off+int64(len(p)) > s.Size {
		p = p[:max(0, s.Size-off)]
	}
	return f.ReadAt(p, s.Off+off)
}

// WriteAt writes within the section.
func (s *Section) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > s.Size {
		return 0, fmt.Errorf("write of %d bytes at %d is past the end of the section", len(p), off)
	}
	f, err := os.OpenFile(s.Path, os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.WriteAt(p, s.Off+off)
}

// Sync makes what was written to the image file durable.
func (s *Section) Sync() error {
	f, err := os.OpenFile(s.Path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// ForgeState is the swap attack: the host formats the state partition with
// a volume whose key it knows, marked as completely provisioned, with a
// systemd-tpm2 keyslot that the guest's vTPM unseals at boot (sealed to PCR
// 7 at pcr7 and PCR 15 at zero). A real host needs only the SRK's public
// key for that keyslot (TPM2_Import); t may be the powered-off vTPM itself,
// which gives the same result. It returns the volume key the host knows.
func (d *Disk) ForgeState(t transport.TPM, pcr7 []byte) ([]byte, error) {
	dev := d.StateDevice()
	tok, _ := json.Marshal(map[string]any{"type": "confidisk-provision", "keyslots": []string{}, "version": 1,
		"step": "complete", "recovery_keyslot": 0, "rw": "overlay"})
	h, vk, err := luks2.Format(dev, uint64(d.State.Size), []byte("the host knows this"), luks2.FormatOptions{
		Integrity: "hmac-sha256", PBKDF: luks2.PBKDF{Type: "pbkdf2", Iterations: 1000}, Tokens: []json.RawMessage{tok},
	})
	if err != nil {
		return nil, err
	}
	if _, _, err := enroll.Enroll(t, dev, h, vk, enroll.EnrollOptions{
		SealOptions: tpm.SealOptions{PCRs: []int{7, 15}, PCRValues: map[int][]byte{7: pcr7, 15: make([]byte, 32)}},
		Keyslot:     -1, TokenID: -1,
	}); err != nil {
		return nil, err
	}
	return vk, nil
}
