package probe

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/internal/testutil"
)

// TestIdentifyRealFilesystems formats images with the real tools and checks
// the name Identify gives.
func TestIdentifyRealFilesystems(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		want string
		tool string
		pkg  string
		args []string
	}{
		{"ext2/3/4", "mkfs.ext4", "e2fsprogs", []string{"-q", "-F"}},
		{"LUKS", "cryptsetup", "cryptsetup-bin", nil}, // arguments below: they need the key file
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			tool := testutil.LookPath(t, tc.tool, tc.pkg)
			img := filepath.Join(dir, tc.tool+".img")
			f, _ := os.Create(img)
			f.Truncate(32 << 20)
			f.Close()
			args := append(tc.args, img)
			if tc.tool == "cryptsetup" {
				kf := filepath.Join(dir, "key")
				os.WriteFile(kf, []byte("k"), 0o600)
				args = []string{"luksFormat", "--batch-mode", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", kf, img}
			}
			if out, err := exec.Command(tool, args...).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", tc.tool, err, out)
			}
			f, _ = os.Open(img)
			defer f.Close()
			got, err := Identify(f)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Identify (-want +got):\n%s", diff)
			}
			if blank, _ := IsBlank(f, 1<<20); blank {
				t.Error("formatted image reported blank")
			}
		})
	}
}

func TestBlankAndShort(t *testing.T) {
	zero := bytes.NewReader(make([]byte, 2<<20))
	if got, err := Identify(zero); got != "" || err != nil {
		t.Errorf("zeros: %q %v", got, err)
	}
	if blank, err := IsBlank(zero, 2<<20); !blank || err != nil {
		t.Errorf("zeros not blank: %v", err)
	}
	if got, _ := Identify(bytes.NewReader([]byte("LUK"))); got != "" {
		t.Errorf("short device: %q", got)
	}
	mbr := make([]byte, 1024)
	mbr[510], mbr[511] = 0x55, 0xaa
	if got, _ := Identify(bytes.NewReader(mbr)); got != "" {
		t.Errorf("MBR without partitions: %q", got)
	}
	mbr[446+4], mbr[446+12] = 0x83, 1
	if got, _ := Identify(bytes.NewReader(mbr)); got != "MBR partition table" {
		t.Errorf("MBR with a partition: %q", got)
	}
}

func TestMountType(t *testing.T) {
	for what, want := range map[string]string{"ext2/3/4": "ext4", "erofs": "erofs", "squashfs": "squashfs", "xfs": "xfs", "btrfs": "btrfs", "LUKS": "", "vfat": "", "": ""} {
		if got := MountType(what); got != want {
			t.Errorf("MountType(%q) = %q, want %q", what, got, want)
		}
	}
}
