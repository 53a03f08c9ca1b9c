package uki_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/internal/testutil"
	"github.com/confidisk/confidisk/lab"
	"github.com/confidisk/confidisk/uki"
)

// stubs returns the lab's pinned systemd-boot-efi of release major.
func stubs(t *testing.T, major int) *lab.StubSet {
	t.Helper()
	s, err := lab.Stubs(context.Background(), "", major)
	if err != nil {
		testutil.Missing(t, fmt.Sprintf("systemd-boot-efi %d", major), err.Error())
	}
	return s
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func random(t *testing.T, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// ukiParts are the sections a confidisk UKI carries, with odd sizes so
// that alignment matters.
func ukiParts(t *testing.T) []uki.Part {
	return []uki.Part{
		{Name: ".osrel", Data: []byte("ID=confidisk\nVERSION_ID=1\n")},
		{Name: ".cmdline", Data: []byte("console=ttyS0 panic=-1")},
		{Name: ".uname", Data: []byte("6.12.57+deb12-amd64")},
		{Name: ".linux", Data: random(t, 1<<20+3)},
		{Name: ".initrd", Data: random(t, 300_001)},
	}
}

// objdumpSection is a row of `objdump -h`.
type objdumpSection struct {
	Name            string
	Size, VMA, File uint64
}

var objdumpRow = regexp.MustCompile(`^\s*\d+\s+(\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s`)

func objdumpH(t *testing.T, path string) []objdumpSection {
	t.Helper()
	out, err := exec.Command(testutil.LookPath(t, "objdump", "binutils"), "-h", path).CombinedOutput()
	if err != nil {
		t.Fatalf("objdump -h: %v\n%s", err, out)
	}
	var rows []objdumpSection
	for _, line := range strings.Split(string(out), "\n") {
		m := objdumpRow.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		size, _ := strconv.ParseUint(m[2], 16, 64)
		vma, _ := strconv.ParseUint(m[3], 16, 64)
		off, _ := strconv.ParseUint(m[4], 16, 64)
		rows = append(rows, objdumpSection{m[1], size, vma, off})
	}
	return rows
}

func objdumpP(t *testing.T, path, field string) uint64 {
	t.Helper()
	out, err := exec.Command("objdump", "-p", path).CombinedOutput()
	if err != nil {
		t.Fatalf("objdump -p: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`(?m)^` + field + `\s+([0-9a-f]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("objdump -p prints no %s", field)
	}
	v, _ := strconv.ParseUint(string(m[1]), 16, 64)
	return v
}

// TestAssembleObjdump builds a UKI and an addon on each pinned stub and
// checks the section table objdump reads: the stub's sections unchanged,
// the new ones after them, aligned, with the exact sizes, at ImageBase+RVA.
func TestAssembleObjdump(t *testing.T) {
	for _, major := range []int{252, 254, 257} {
		t.Run(strconv.Itoa(major), func(t *testing.T) {
			set := stubs(t, major)
			stub := readFile(t, set.Linux)
			parts := ukiParts(t)
			out, err := uki.Assemble(stub, parts)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "uki.efi")
			os.WriteFile(path, out, 0o644)
			checkObjdump(t, set.Linux, path, parts)
			if len(out)%8 != 0 {
				t.Errorf("size %d is not a multiple of 8", len(out))
			}
			info, err := uki.Inspect(out)
			if err != nil {
				t.Fatal(err)
			}
			if info.Stub.Major != major || info.Stub.Kind != uki.KindStub {
				t.Errorf("Inspect: stub %v, want systemd-stub %d", info.Stub, major)
			}
			for _, p := range parts {
				got, err := uki.SectionData(out, p.Name)
				if err != nil || !bytes.Equal(got, p.Data) {
					t.Errorf("section %s: data differs (err %v)", p.Name, err)
				}
			}
			if set.Addon == "" {
				return
			}
			addonParts := []uki.Part{{Name: ".cmdline", Data: []byte("roothash=" + strings.Repeat("ab", 32))}}
			addon, err := uki.Assemble(readFile(t, set.Addon), addonParts)
			if err != nil {
				t.Fatal(err)
			}
			apath := filepath.Join(t.TempDir(), "roothash.addon.efi")
			os.WriteFile(apath, addon, 0o644)
			checkObjdump(t, set.Addon, apath, addonParts)
			if st, err := uki.Identify(addon); err != nil || st.Kind != uki.KindAddon {
				t.Errorf("Identify(addon) = %v, %v; want an addon", st, err)
			}
		})
	}
}

func checkObjdump(t *testing.T, stubPath, path string, parts []uki.Part) {
	t.Helper()
	base := objdumpP(t, stubPath, "ImageBase")
	salign := objdumpP(t, stubPath, "SectionAlignment")
	falign := objdumpP(t, stubPath, "FileAlignment")
	before := objdumpH(t, stubPath)
	after := objdumpH(t, path)
	if len(after) != len(before)+len(parts) {
		t.Fatalf("objdump -h lists %d sections, want %d + %d", len(after), len(before), len(parts))
	}
	if diff := cmp.Diff(before, after[:len(before)]); diff != "" {
		t.Errorf("stub sections changed (-stub +uki):\n%s", diff)
	}
	prev := before[len(before)-1]
	for i, p := range parts {
		got := after[len(before)+i]
		want := objdumpSection{Name: p.Name, Size: uint64(len(p.Data))}
		if got.Name != want.Name || got.Size != want.Size {
			t.Errorf("section %d: %s size %#x, want %s size %#x", i, got.Name, got.Size, want.Name, want.Size)
		}
		if got.VMA%salign != 0 || got.VMA < prev.VMA+prev.Size || got.VMA-(prev.VMA+prev.Size) >= salign {
			t.Errorf("%s at VMA %#x: not the next %#x boundary after %s (%#x+%#x)", p.Name, got.VMA, salign, prev.Name, prev.VMA, prev.Size)
		}
		if got.File%falign != 0 {
			t.Errorf("%s at file offset %#x: not %#x-aligned", p.Name, got.File, falign)
		}
		prev = got
	}
	if got, want := objdumpP(t, path, "SizeOfImage"), (prev.VMA-base+prev.Size+salign-1)/salign*salign; got != want {
		t.Errorf("SizeOfImage %#x, want %#x", got, want)
	}
}

// TestPCR11SystemdMeasure compares the PCR 11 prediction for a 252 UKI
// with systemd-measure 252's for the same sections.
func TestPCR11SystemdMeasure(t *testing.T) {
	measure := "/usr/lib/systemd/systemd-measure"
	if _, err := os.Stat(measure); err != nil {
		testutil.Missing(t, "systemd-measure", "apt-get install -y systemd")
	}
	set := stubs(t, 252)
	parts := ukiParts(t)[:2]
	parts = append(parts, ukiParts(t)[3:]...) // systemd-measure 252 has no --uname
	out, err := uki.Assemble(readFile(t, set.Linux), parts)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := uki.KernelBootEvents(out)
	if err != nil {
		t.Fatal(err)
	}
	got := uki.Extend(ev)
	dir := t.TempDir()
	args := []string{"calculate", "--bank=sha256", "--phase="}
	for _, p := range parts {
		f := filepath.Join(dir, p.Name[1:])
		os.WriteFile(f, p.Data, 0o644)
		args = append(args, "--"+p.Name[1:]+"="+f)
	}
	res, err := exec.Command(measure, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-measure: %v\n%s", err, res)
	}
	m := regexp.MustCompile(`(?m)^11:sha256=([0-9a-f]{64})$`).FindSubmatch(res)
	if m == nil {
		t.Fatalf("systemd-measure printed no pcr 11:\n%s", res)
	}
	if want := string(m[1]); hex.EncodeToString(got[:]) != want {
		t.Errorf("pcr 11 %x, systemd-measure %s", got, m[1])
	}
	if len(ev) != 2*len(parts) {
		t.Errorf("%d events, want %d", len(ev), 2*len(parts))
	}
}

// TestPCR11Order checks that 254+ also measures the stub's own .sbat and
// .uname, in the release's order, and that an unknown release is refused.
func TestPCR11Order(t *testing.T) {
	set := stubs(t, 254)
	out, err := uki.Assemble(readFile(t, set.Linux), ukiParts(t))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := uki.KernelBootEvents(out)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ev {
		if n, ok := strings.CutPrefix(e.Description, "section name "); ok {
			names = append(names, n)
		}
	}
	want := []string{".linux", ".osrel", ".cmdline", ".initrd", ".uname", ".sbat"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("measured sections (-want +got):\n%s", diff)
	}
	forged := bytes.Replace(out, []byte("systemd-stub 254.26"), []byte("systemd-stub 255.26"), 1)
	if _, err := uki.KernelBootEvents(forged); err == nil || !strings.Contains(err.Error(), "systemd-stub 255.26") {
		t.Errorf("stub 255: err %v, want a refusal naming the version", err)
	}
}

// TestAddonEvents checks PCR 12 against the values the lab measured in
// guests booted through OVMF with the 254 stub (docs/image.md).
func TestAddonEvents(t *testing.T) {
	got := uki.CommandLineEvent(12, "x", "console=ttyS0")
	sum := "a1f09cc8" // the lab's LoadOptions override "console=ttyS0", PCR 12 after one extend
	if v := uki.Extend([]uki.Event{got}); !strings.HasPrefix(hex.EncodeToString(v[:]), sum) {
		t.Errorf("override pcr 12 %x, want %s…", v, sum)
	}
	ev := uki.AddonEvents(nil, []string{"a=1", "b=2"})
	if len(ev) != 1 || ev[0] != uki.CommandLineEvent(12, "addon command line", "a=1 b=2") {
		t.Errorf("AddonEvents = %+v, want one event over \"a=1 b=2\"", ev)
	}
}

func TestAssembleReproducibleAndSBAT(t *testing.T) {
	set := stubs(t, 254)
	stub := readFile(t, set.Linux)
	parts := ukiParts(t)
	a, err := uki.Assemble(stub, parts)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := uki.Assemble(stub, parts)
	if !bytes.Equal(a, b) {
		t.Fatal("two assemblies of the same input differ")
	}
	line := "confidisk,1,confidisk,confidisk,1,https://github.com/confidisk/confidisk\n"
	c, err := uki.Assemble(stub, append(parts, uki.Part{Name: ".sbat", Data: []byte(line)}))
	if err != nil {
		t.Fatal(err)
	}
	sbat, _ := uki.SectionData(c, ".sbat")
	stubSBAT, _ := uki.SectionData(stub, ".sbat")
	if want := strings.TrimRight(string(stubSBAT), "\x00") + line; string(sbat) != want {
		t.Errorf(".sbat = %q, want %q", sbat, want)
	}
	if _, err := uki.Assemble(stub, []uki.Part{{Name: ".sbat", Data: bytes.Repeat([]byte("x"), 4096)}}); err == nil {
		t.Error("an .sbat that does not fit was accepted")
	}
}

func TestAssembleBadInput(t *testing.T) {
	set := stubs(t, 254)
	stub := readFile(t, set.Linux)
	for _, tc := range []struct {
		name  string
		stub  []byte
		parts []uki.Part
		want  string
	}{
		{"not pe", []byte("#!/bin/sh\n"), nil, "not a pe image"},
		{"truncated", stub[:700], nil, "stub:"},
		{"long name", stub, []uki.Part{{Name: ".toolongname", Data: []byte("x")}}, "at most 8 bytes"},
		{"no dot", stub, []uki.Part{{Name: "linux", Data: []byte("x")}}, "starting with '.'"},
		{"duplicate", stub, []uki.Part{{Name: ".text", Data: []byte("x")}}, "already has one"},
		{"empty", stub, []uki.Part{{Name: ".cmdline"}}, "empty"},
		{"twice", stub, []uki.Part{{Name: ".osrel", Data: []byte("x")}, {Name: ".osrel", Data: []byte("y")}}, "already has one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := uki.Assemble(tc.stub, tc.parts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want one containing %q", err, tc.want)
			}
		})
	}
}
