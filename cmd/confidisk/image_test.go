//go:build !confidisk_guest

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/attest"
	"github.com/confidisk/confidisk/gpt"
	"github.com/confidisk/confidisk/internal/testutil"
	"github.com/confidisk/confidisk/lab"
	"github.com/confidisk/confidisk/tpm"
	"github.com/confidisk/confidisk/uki"
)

// imageInputs are the files of an image build: Secure Boot keys, the 254
// stubs, a stand-in kernel (the addon stub with the bzImage "HdrS" magic:
// a PE that CheckKernel accepts; it is never booted here), an initrd and a
// root directory.
type imageInputs struct {
	dir, keys, stub, addon, kernel, initrd, root string
}

func newImageInputs(t *testing.T) *imageInputs {
	t.Helper()
	testutil.LookPath(t, "mkfs.erofs", "erofs-utils")
	testutil.LookPath(t, "mkfs.fat", "dosfstools")
	testutil.LookPath(t, "mcopy", "mtools")
	set, err := lab.Stubs(context.Background(), "", 254)
	if err != nil {
		testutil.Missing(t, "systemd-boot-efi 254", err.Error())
	}
	in := &imageInputs{dir: t.TempDir(), stub: set.Linux, addon: set.Addon}
	in.keys = filepath.Join(in.dir, "keys")
	if _, _, err := runIn(t, "", "image", "keys", "--owner", "6f1a4f2e-5d0c-4b7a-9e38-2a1c0d9b7e11", "--auth-time", "2026-01-01T00:00:00Z", in.keys); err != nil {
		t.Fatal(err)
	}
	k, err := os.ReadFile(set.Addon)
	if err != nil {
		t.Fatal(err)
	}
	copy(k[0x202:], "HdrS")
	in.kernel = in.write(t, "vmlinuz", k)
	in.initrd = in.write(t, "initrd.img", bytes.Repeat([]byte("initrd"), 1000))
	in.root = filepath.Join(in.dir, "root")
	os.MkdirAll(filepath.Join(in.root, "etc"), 0o755)
	os.WriteFile(filepath.Join(in.root, "etc/hello"), []byte("hello\n"), 0o644)
	return in
}

func (in *imageInputs) write(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(in.dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// args are the flags of a good build writing into out/.
func (in *imageInputs) args(out string) []string {
	return []string{"image", "build", "--root", in.root, "--kernel", in.kernel, "--initrd", in.initrd,
		"--stub", in.stub, "--addon-stub", in.addon, "--keys", in.keys, "--seed", "test",
		"--state-size", "8M", "--policy", filepath.Join(out, "policy.json"), "--json"}
}

// TestImageBuild builds an image, checks its signed UKI and addon with
// osslsigncode and sbverify, the policy with attest.ParsePolicy, and that a
// second build is byte-identical.
func TestImageBuild(t *testing.T) {
	in := newImageInputs(t)
	build := func(name string) (string, map[string]any) {
		out := filepath.Join(in.dir, name)
		os.MkdirAll(out, 0o755)
		stdout, stderr, err := runIn(t, "", append(in.args(out), filepath.Join(out, "disk.img"))...)
		if err != nil {
			t.Fatalf("image build: %v\n%s", err, stderr)
		}
		var rep map[string]any
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
			t.Fatalf("--json output %q: %v", stdout, err)
		}
		return out, rep
	}
	a, rep := build("a")
	b, _ := build("b")
	for _, f := range []string{"disk.img", "policy.json"} {
		x, _ := os.ReadFile(filepath.Join(a, f))
		y, _ := os.ReadFile(filepath.Join(b, f))
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between two builds of the same inputs", f)
		}
	}
	pol, err := attest.LoadPolicy(filepath.Join(a, "policy.json"))
	if err != nil {
		t.Fatal(err)
	}
	pcrs, _ := rep["pcrs"].(map[string]any)
	for _, i := range []int{4, 7, 11, 12} {
		if got, want := pol.PCRs[i], []string{fmt.Sprint(pcrs[fmt.Sprint(i)])}; !cmp.Equal(got, want) {
			t.Errorf("policy pcr %d = %v, the build reported %v", i, got, want)
		}
	}
	if diff := cmp.Diff([]string{fmt.Sprint(rep["root_hash"])}, pol.RootHashes); diff != "" {
		t.Errorf("policy root hashes (-built +policy):\n%s", diff)
	}
	disk := filepath.Join(a, "disk.img")
	for _, f := range []string{"/EFI/BOOT/BOOTX64.EFI", "/EFI/BOOT/BOOTX64.EFI.extra.d/roothash.addon.efi"} {
		pe := filepath.Join(t.TempDir(), filepath.Base(f))
		mcopyOut(t, disk, f, pe)
		crt := filepath.Join(in.keys, "db.crt")
		if out, err := exec.Command(testutil.LookPath(t, "osslsigncode", "osslsigncode"), "verify", "-CAfile", crt, "-in", pe).CombinedOutput(); err != nil {
			t.Errorf("osslsigncode verify %s: %v\n%s", f, err, out)
		}
		if out, err := exec.Command(testutil.LookPath(t, "sbverify", "sbsigntool"), "--cert", crt, pe).CombinedOutput(); err != nil {
			t.Errorf("sbverify %s: %v\n%s", f, err, out)
		}
	}
	addon := filepath.Join(t.TempDir(), "addon.efi")
	mcopyOut(t, disk, "/EFI/BOOT/BOOTX64.EFI.extra.d/roothash.addon.efi", addon)
	ukiFile := filepath.Join(t.TempDir(), "uki.efi")
	mcopyOut(t, disk, "/EFI/BOOT/BOOTX64.EFI", ukiFile)
	out, _, err := runIn(t, "", "image", "inspect", "--json", ukiFile, addon)
	if err != nil {
		t.Fatal(err)
	}
	var reps []struct {
		PCRs map[string]string `json:"pcrs"`
	}
	if err := json.Unmarshal([]byte(out), &reps); err != nil || len(reps) != 2 {
		t.Fatalf("image inspect --json: %v\n%s", err, out)
	}
	if reps[0].PCRs["11"] != pcrs["11"] || reps[1].PCRs["12"] != pcrs["12"] {
		t.Errorf("image inspect: uki pcr 11 %s, addon pcr 12 %s; the build predicted %v and %v", reps[0].PCRs["11"], reps[1].PCRs["12"], pcrs["11"], pcrs["12"])
	}
	sec, err := exec.Command("objcopy", "-O", "binary", "--only-section=.cmdline", addon, "/dev/stdout").Output()
	if err != nil || string(sec) != fmt.Sprint("roothash=", rep["root_hash"]) {
		t.Errorf("addon .cmdline = %q (%v), want roothash=%v", sec, err, rep["root_hash"])
	}
}

// mcopyOut copies a file out of the disk's ESP (partition 1 at 1 MiB).
func mcopyOut(t *testing.T, disk, path, dst string) {
	t.Helper()
	cmd := exec.Command("mcopy", "-i", disk+"@@1M", "::"+path, dst)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1", "MTOOLSRC=/dev/null")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mcopy %s: %v: %s", path, err, out)
	}
}

// TestImageBuildRefuses: bad inputs fail with one line naming the problem,
// before anything is written.
func TestImageBuildRefuses(t *testing.T) {
	in := newImageInputs(t)
	stub252, err := lab.Stubs(context.Background(), "", 252)
	if err != nil {
		testutil.Missing(t, "systemd-boot-efi 252", err.Error())
	}
	text := in.write(t, "text", []byte("#!/bin/sh\necho not a pe\n"))
	mismatched := filepath.Join(in.dir, "mismatched")
	os.CopyFS(mismatched, os.DirFS(in.keys))
	kek, _ := os.ReadFile(filepath.Join(in.keys, "KEK.crt"))
	os.WriteFile(filepath.Join(mismatched, "db.crt"), kek, 0o644)
	nokey := filepath.Join(in.dir, "nokey")
	os.CopyFS(nokey, os.DirFS(in.keys))
	os.Remove(filepath.Join(nokey, "db.key"))
	big := filepath.Join(in.dir, "bigroot")
	os.MkdirAll(big, 0o755)
	os.WriteFile(filepath.Join(big, "blob"), bytes.Repeat([]byte{1}, 4<<20), 0o644)
	existing := in.write(t, "existing.json", []byte("{}"))
	for _, tc := range []struct {
		name string
		set  map[string]string
		want string
	}{
		{"stub not pe", map[string]string{"--stub": text}, "stub: not a pe image"},
		{"addon stub as stub", map[string]string{"--stub": in.addon}, "is an addon stub"},
		{"addons on 252", map[string]string{"--stub": stub252.Linux}, "loads no addons"},
		{"kernel not bzImage", map[string]string{"--kernel": in.initrd}, "kernel: not a bzImage"},
		{"kernel not efi", map[string]string{"--kernel": in.write(t, "fake", append(make([]byte, 0x202), "HdrS...."...))}, "no MZ header"},
		{"missing key", map[string]string{"--keys": nokey}, "db.key"},
		{"cert mismatch", map[string]string{"--keys": mismatched}, "db.crt does not match"},
		{"policy exists", map[string]string{"--policy": existing}, "exists"},
		{"root too large", map[string]string{"--root": big, "--fs": "ext4", "--root-size": "1M"}, "root"},
		{"no keys", map[string]string{"--keys": ""}, "--keys DIR is required"},
		{"bad size", map[string]string{"--state-size": "lots"}, "--state-size"},
		{"bad pcrs", map[string]string{"--policy-pcrs": "4,9"}, "--policy-pcrs"},
		{"bad dbx", map[string]string{"--dbx": text}, "dbx "},
		{"bad pcr key", map[string]string{"--pcr-private-key": text}, "--pcr-private-key"},
		{"file with prebuilt initrd", map[string]string{"--file": "/etc/x=" + text}, "--file shapes the initrd image build makes"},
		{"sysext not raw", map[string]string{"--sysext": text}, "systemd-stub takes only NAME.raw"},
		{"sysext missing", map[string]string{"--sysext": filepath.Join(in.dir, "missing.raw")}, "system extension: stat"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			args := in.args(out)
			for k, v := range tc.set {
				if i := indexOf(args, k); i >= 0 {
					args[i+1] = v
				} else {
					args = append(args, k, v)
				}
			}
			_, _, err := runIn(t, "", append(args, filepath.Join(out, "disk.img"))...)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err %v, want one line containing %q", err, tc.want)
			}
			if left, _ := os.ReadDir(out); len(left) != 0 {
				t.Errorf("the refused build left %v", left)
			}
		})
	}
}

func indexOf(args []string, flag string) int {
	for i, a := range args {
		if a == flag {
			return i
		}
	}
	return -1
}

// TestImageBuildPCRSignature: with --pcr-private-key the UKI carries
// .pcrpkey and a .pcrsig whose entry for the empty phase signs exactly the
// PCR 11 value the build predicts (and image inspect computes), found the
// way the unsealing side finds it (tpm.FindPCRSignature).
func TestImageBuildPCRSignature(t *testing.T) {
	in := newImageInputs(t)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := in.write(t, "pcr.pem", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	out := filepath.Join(in.dir, "signed")
	os.MkdirAll(out, 0o755)
	stdout, stderr, err := runIn(t, "", append(in.args(out), "--pcr-private-key", keyFile, filepath.Join(out, "disk.img"))...)
	if err != nil {
		t.Fatalf("image build: %v\n%s", err, stderr)
	}
	var rep struct {
		PCRs map[string]string `json:"pcrs"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	ukiFile := filepath.Join(t.TempDir(), "uki.efi")
	mcopyOut(t, filepath.Join(out, "disk.img"), "/EFI/BOOT/BOOTX64.EFI", ukiFile)
	b, _ := os.ReadFile(ukiFile)
	doc, _ := uki.SectionData(b, ".pcrsig")
	pkey, _ := uki.SectionData(b, ".pcrpkey")
	if blk, _ := pem.Decode(pkey); blk == nil || blk.Type != "PUBLIC KEY" {
		t.Fatalf(".pcrpkey %q is not a PEM public key", pkey)
	}
	v, _ := hex.DecodeString(rep.PCRs["11"])
	pol, err := tpm.PolicyDigest(tpm.SHA256, []int{11}, map[int][]byte{11: v}, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tpm.FindPCRSignature(doc, tpm.SHA256, []int{11}, &key.PublicKey, pol); err != nil {
		t.Errorf("no signature for the predicted pcr 11 %s: %v\n%s", rep.PCRs["11"], err, doc)
	}
	var m map[string][]tpm.PCRSignature
	if err := json.Unmarshal(doc, &m); err != nil || len(m["sha256"]) != len(uki.ConfidiskPhases()) {
		t.Errorf(".pcrsig has %d entries (%v), want one per phase %q", len(m["sha256"]), err, uki.ConfidiskPhases())
	}
}

// TestImageBuildUsrOnly: --usr-only lays the verity pair out as usr and
// usr-verity partitions whose UUIDs come from the usr hash (read with
// sfdisk, the oracle), and the signed addon carries usrhash=.
func TestImageBuildUsrOnly(t *testing.T) {
	in := newImageInputs(t)
	out := t.TempDir()
	disk := filepath.Join(out, "disk.img")
	stdout, stderr, err := runIn(t, "", append(in.args(out), "--usr-only", disk)...)
	if err != nil {
		t.Fatalf("image build --usr-only: %v\n%s", err, stderr)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	hash := fmt.Sprint(rep["root_hash"])
	raw, err := exec.Command(testutil.LookPath(t, "sfdisk", "fdisk"), "--json", disk).Output()
	if err != nil {
		t.Fatal(err)
	}
	var pt struct {
		PartitionTable struct {
			Partitions []struct{ Type, UUID, Name string } `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal(raw, &pt); err != nil {
		t.Fatal(err)
	}
	hb, _ := hex.DecodeString(hash)
	dataUUID, hashUUID := gpt.VerityUUIDs(hb)
	var got [][3]string
	for _, p := range pt.PartitionTable.Partitions[1:3] {
		got = append(got, [3]string{strings.ToLower(p.Type), strings.ToLower(p.UUID), p.Name})
	}
	want := [][3]string{
		{gpt.TypeUsrX86_64.String(), dataUUID.String(), "usr-x86-64"},
		{gpt.TypeUsrVerityX86_64.String(), hashUUID.String(), "usr-x86-64-verity"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("partitions 2 and 3 (-want +sfdisk):\n%s", d)
	}
	addon := filepath.Join(t.TempDir(), "addon.efi")
	mcopyOut(t, disk, "/EFI/BOOT/BOOTX64.EFI.extra.d/roothash.addon.efi", addon)
	sec, err := exec.Command("objcopy", "-O", "binary", "--only-section=.cmdline", addon, "/dev/stdout").Output()
	if err != nil || string(sec) != "usrhash="+hash {
		t.Errorf("addon .cmdline = %q (%v), want usrhash=%s", sec, err, hash)
	}
}
