package image

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/gpt"
	"github.com/confidisk/confidisk/internal/testutil"
)

// fixedBoot puts a fake UKI and an addon naming the root hash on the ESP.
type fixedBoot struct{}

func (fixedBoot) ESPFiles(_ context.Context, rootHash []byte, dir string) ([]ESPFile, error) {
	uki, addon := filepath.Join(dir, "uki.efi"), filepath.Join(dir, "addon.efi")
	if err := os.WriteFile(uki, bytes.Repeat([]byte("UKI"), 100000), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(addon, []byte("roothash="+hex.EncodeToString(rootHash)), 0o644); err != nil {
		return nil, err
	}
	return []ESPFile{
		{Path: "/EFI/BOOT/BOOTX64.EFI", Source: uki},
		{Path: "/EFI/BOOT/BOOTX64.EFI.extra.d/roothash.addon.efi", Source: addon},
	}, nil
}

func rootTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for p, c := range map[string]string{"etc/os-release": "ID=confidisk-test\n", "sbin/init": "#!/bin/sh\n", "var/.keep": ""} {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func build(t *testing.T, s Spec, out string) *Result {
	t.Helper()
	res, err := Build(context.Background(), s, out)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return res
}

// section copies bytes [off, off+n) of file to a new file.
func section(t *testing.T, file string, off, n int64) string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "part")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBuildOracles builds a disk and checks it with the Linux tools: sfdisk
// reads the DPS table (types, the UUIDs derived from the root hash),
// veritysetup verifies the root against the root hash, fsck.fat finds the
// ESP clean and mtools reads the files back; a second build with the same
// seed is byte-identical.
func TestBuildOracles(t *testing.T) {
	for _, fstype := range []string{"ext4", "erofs"} {
		t.Run(fstype, func(t *testing.T) {
			sfdisk := testutil.LookPath(t, "sfdisk", "fdisk")
			veritysetup := testutil.LookPath(t, "veritysetup", "cryptsetup-bin")
			fsck := testutil.LookPath(t, "fsck.fat", "dosfstools")
			mtype := testutil.LookPath(t, "mtype", "mtools")
			testutil.LookPath(t, "mkfs.erofs", "erofs-utils")
			dir := t.TempDir()
			spec := Spec{Root: RootFS{Source: rootTree(t), Type: fstype}, ESPSize: 64 << 20, StateSize: 32 << 20, Seed: NewSeed("test"), Boot: fixedBoot{}}
			one := filepath.Join(dir, "one.raw")
			res := build(t, spec, one)
			if res.FSType != fstype {
				t.Errorf("fs type %q, want %q", res.FSType, fstype)
			}
			dump, err := exec.Command(sfdisk, "--dump", one).CombinedOutput()
			if err != nil {
				t.Fatalf("sfdisk --dump: %v: %s", err, dump)
			}
			rh, _ := hex.DecodeString(res.RootHash)
			dataUUID, hashUUID := gpt.VerityUUIDs(rh)
			for _, want := range []string{
				"type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
				"type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, uuid=" + strings.ToUpper(dataUUID.String()),
				"type=2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5, uuid=" + strings.ToUpper(hashUUID.String()),
				`name="state"`, `attrs="GUID:60"`,
			} {
				if !strings.Contains(string(dump), want) {
					t.Errorf("sfdisk --dump lacks %q:\n%s", want, dump)
				}
			}
			p := res.Partitions
			data, hash := section(t, one, p[1].Start, p[1].Size), section(t, one, p[2].Start, p[2].Size)
			if b, err := exec.Command(veritysetup, "verify", data, hash, res.RootHash).CombinedOutput(); err != nil {
				t.Errorf("veritysetup verify: %v: %s", err, b)
			}
			esp := section(t, one, p[0].Start, p[0].Size)
			if b, err := exec.Command(fsck, "-n", esp).CombinedOutput(); err != nil {
				t.Errorf("fsck.fat -n: %v: %s", err, b)
			}
			got, err := exec.Command(mtype, "-i", esp, "::/EFI/BOOT/BOOTX64.EFI.extra.d/roothash.addon.efi").CombinedOutput()
			if err != nil {
				t.Fatalf("mtype: %v: %s", err, got)
			}
			if diff := cmp.Diff("roothash="+res.RootHash, string(got)); diff != "" {
				t.Errorf("addon on the esp (-want +got):\n%s", diff)
			}
			time.Sleep(1100 * time.Millisecond) // a time-dependent field would now differ
			two := filepath.Join(dir, "two.raw")
			build(t, spec, two)
			a, _ := os.ReadFile(one)
			b, _ := os.ReadFile(two)
			switch {
			case bytes.Equal(a, b):
			case fstype == "ext4":
				// mke2fs 1.47.0 stamps some inodes with the time of the
				// build (fixed by SOURCE_DATE_EPOCH only in 1.47.1): known,
				// documented in docs/image.md; erofs is reproducible.
				t.Log("ext4 builds differ: mke2fs 1.47.0 is not reproducible from a directory")
			default:
				t.Error("two builds with the same inputs and seed differ")
			}
		})
	}
}

func writeTar(t *testing.T, members []tar.Header) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "root.tar")
	var buf bytes.Buffer
	w := tar.NewWriter(&buf)
	for _, h := range members {
		h := h
		body := []byte(h.Linkname)
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
			h.Linkname = ""
		}
		if err := w.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			w.Write(body)
		}
	}
	w.Close()
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBuildRefuses(t *testing.T) {
	testutil.LookPath(t, "mkfs.ext4", "e2fsprogs")
	testutil.LookPath(t, "mkfs.fat", "dosfstools")
	escape := writeTar(t, []tar.Header{
		{Name: "etc", Typeflag: tar.TypeSymlink, Linkname: "/tmp", Mode: 0o777},
		{Name: "etc/passwd", Typeflag: tar.TypeReg, Linkname: "pwned", Mode: 0o644},
	})
	device := writeTar(t, []tar.Header{{Name: "dev/sda", Typeflag: tar.TypeBlock, Mode: 0o600}})
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, make([]byte, 70<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	tree := rootTree(t)
	if err := os.WriteFile(filepath.Join(tree, "large"), bytes.Repeat([]byte{1}, 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	ok := Spec{Root: RootFS{Source: tree}, ESPSize: 64 << 20, StateSize: 32 << 20, Seed: NewSeed("x")}
	tests := []struct {
		name string
		edit func(*Spec)
		want string
	}{
		{"missing root", func(s *Spec) { s.Root.Source = tree + ".missing" }, "no such file"},
		{"unknown fs type", func(s *Spec) { s.Root.Type = "btrfs" }, `type "btrfs": want ext4 or erofs`},
		{"tar symlink escape", func(s *Spec) { s.Root.Source = escape }, "is a symlink in the archive"},
		{"tar device node", func(s *Spec) { s.Root.Source = device }, "unsupported member type"},
		{"not a tar nor an image", func(s *Spec) { s.Root.Source = big }, "neither a file system image nor a tar archive"},
		{"root larger than its size", func(s *Spec) { s.Root.Size = 2 << 20 }, "needs at least"},
		{"esp too small", func(s *Spec) { s.ESPSize = 1 << 20 }, "esp size"},
		{"esp files too large", func(s *Spec) { s.Boot = bigBoot{big} }, "more than an esp"},
		{"no state", func(s *Spec) { s.StateSize = 0 }, "state partition size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ok
			tt.edit(&s)
			out := filepath.Join(t.TempDir(), "disk.raw")
			_, err := Build(context.Background(), s, out)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Build: %v, want an error containing %q", err, tt.want)
			}
			if _, err := os.Stat(out); err == nil {
				t.Error("a failed build left the output")
			}
			if entries, _ := os.ReadDir(filepath.Dir(out)); len(entries) != 0 {
				t.Errorf("a failed build left %v", entries)
			}
		})
	}
	if _, err := os.Stat("/tmp/passwd"); err == nil {
		b, _ := os.ReadFile("/tmp/passwd")
		if string(b) == "pwned" {
			t.Error("the archive wrote through its symlink to /tmp/passwd")
		}
	}
}

type bigBoot struct{ file string }

func (b bigBoot) ESPFiles(context.Context, []byte, string) ([]ESPFile, error) {
	return []ESPFile{{Path: "/big", Source: b.file}}, nil
}

func TestSeedUUIDs(t *testing.T) {
	s := NewSeed("a")
	u := s.UUID("x")
	if u[6]>>4 != 4 || u[8]>>6 != 2 {
		t.Errorf("uuid %s is not version 4, variant 10", u)
	}
	if u == s.UUID("y") || u == NewSeed("b").UUID("x") {
		t.Error("different purposes or seeds gave the same uuid")
	}
	if u != NewSeed("a").UUID("x") {
		t.Error("the same seed and purpose gave different uuids")
	}
}

// TestLayoutMoveData: the disk made by moving the data file into place
// (FALLOC_FL_INSERT_RANGE) is byte for byte the one made by copying it, on
// a file system that can insert ranges and on one that cannot (tmpfs, where
// Write falls back to copying).
func TestLayoutMoveData(t *testing.T) {
	dirs := []string{t.TempDir()}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "layout-")
		if err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			dirs = append(dirs, d)
		}
	}
	var want []byte
	for _, dir := range dirs {
		for _, move := range []bool{false, true} {
			put := func(name string, size int, fill byte) string {
				p := filepath.Join(dir, name)
				if err := os.WriteFile(p, bytes.Repeat([]byte{fill}, size), 0o644); err != nil {
					t.Fatal(err)
				}
				return p
			}
			l := Layout{ESP: put("esp", 1<<20, 'e'), Data: put("data", 3<<20+4096, 'd'), Hash: put("hash", 8192, 'h'),
				RootHash: bytes.Repeat([]byte{7}, 32), StateSize: 1 << 20, Seed: NewSeed("move"), MoveData: move}
			out := filepath.Join(dir, "disk.raw")
			if _, err := l.Write(out); err != nil {
				t.Fatalf("%s, move %v: %v", dir, move, err)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if want == nil {
				want = got
			} else if !bytes.Equal(got, want) {
				t.Errorf("%s, move %v: the disk differs from the copied one", dir, move)
			}
			os.Remove(out)
		}
	}
}
