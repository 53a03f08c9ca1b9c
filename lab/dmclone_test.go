package lab

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/internal/testutil"
)

func TestKernelBuildPackages(t *testing.T) {
	got, err := kernelBuildPackages("6.12.118+deb12-amd64", "6.12.118-1~deb12u1")
	if err != nil {
		t.Fatal(err)
	}
	want := []buildPackage{
		{Name: "linux-source-6.12", Version: "6.12.118-1~deb12u1", Source: true},
		{Name: "linux-headers-6.12.118+deb12-amd64", Version: "6.12.118-1~deb12u1"},
		{Name: "linux-headers-6.12.118+deb12-common", Version: "6.12.118-1~deb12u1"},
		{Name: "linux-kbuild-6.12.118+deb12", Version: "6.12.118-1~deb12u1"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("packages (-want +got):\n%s", diff)
	}
	// The Debian revision is whatever the kernel package has, not "-1".
	got, err = kernelBuildPackages("6.12.115+deb12-cloud-amd64", "6.12.115-2~deb12u1")
	if err != nil || got[1].Name != "linux-headers-6.12.115+deb12-cloud-amd64" || got[3].Name != "linux-kbuild-6.12.115+deb12" || got[0].Version != "6.12.115-2~deb12u1" {
		t.Errorf("cloud flavour: %+v, %v", got, err)
	}
	if s := kernelSeries("6.12.118+deb12-amd64"); s != "6.12" {
		t.Errorf("kernelSeries = %q, want 6.12", s)
	}
	for _, bad := range []struct{ release, version string }{
		{"6.12.118-amd64", "6.12.118-1"},
		{"linux-image-6.12.118+deb12-amd64", "6.12.118-1"},
		{"6.12.118+deb12-amd64", ""},
		{"6.12.118+deb12-amd64", "6.12.118-1 foo=2"},
	} {
		if _, err := kernelBuildPackages(bad.release, bad.version); err == nil {
			t.Errorf("kernelBuildPackages(%q, %q) succeeded", bad.release, bad.version)
		}
	}
}

func TestDebianVersionSources(t *testing.T) {
	v, err := changelogVersion("linux-6.12 (6.12.118-1~deb12u1) bookworm-security; urgency=high\n")
	if err != nil || v != "6.12.118-1~deb12u1" {
		t.Errorf("changelogVersion = %q, %v", v, err)
	}
	for _, bad := range []string{"", "linux-6.12 bookworm", "linux-6.12 () x", "linux (a b) x"} {
		if v, err := changelogVersion(bad); err == nil {
			t.Errorf("changelogVersion(%q) = %q, want an error", bad, v)
		}
	}
	show := "Package: linux-headers-6.12.115+deb12-amd64\nVersion: 6.12.115-1~deb12u1\n\nPackage: linux-headers-6.12.115+deb12-amd64\nVersion: 6.12.115-2~deb12u1\n"
	if v := highestVersion(show); v != "6.12.115-2~deb12u1" {
		t.Errorf("highestVersion = %q", v)
	}
	if v := highestVersion("N: Unable to locate package x\n"); v != "" {
		t.Errorf("highestVersion of nothing = %q", v)
	}
}

func TestCheckCompiler(t *testing.T) {
	const kernel = "x86_64-linux-gnu-gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0"
	tests := []struct {
		host string
		ok   bool
	}{
		{"x86_64-linux-gnu-gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0\nCopyright (C) 2022 Free Software Foundation, Inc.\n", true},
		{"x86_64-linux-gnu-gcc-12 (Debian 12.2.0-14+deb12u2) 12.2.0\n", true},
		{"x86_64-linux-gnu-gcc-12 (Debian 12.3.0-1) 12.3.0\n", false},
		{"gcc (Debian 12.2.0-14+deb12u1) 12.2.0\n", false},
		{"", false},
	}
	for _, tt := range tests {
		if err := checkCompiler(kernel, tt.host); (err == nil) != tt.ok {
			t.Errorf("checkCompiler(%q) = %v, want ok %v", tt.host, err, tt.ok)
		}
	}
	if p := compilerPackage("x86_64-linux-gnu-gcc-12"); p != "gcc-12" {
		t.Errorf("compilerPackage = %q, want gcc-12", p)
	}
}

func TestKernelConfigString(t *testing.T) {
	config := filepath.Join(t.TempDir(), "config")
	os.WriteFile(config, []byte("CONFIG_X=y\nCONFIG_CC_VERSION_TEXT=\"x86_64-linux-gnu-gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0\"\n# CONFIG_DM_CLONE is not set\n"), 0o644)
	v, err := kernelConfigString(config, "CONFIG_CC_VERSION_TEXT")
	if err != nil || v != "x86_64-linux-gnu-gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0" {
		t.Errorf("kernelConfigString = %q, %v", v, err)
	}
	if _, err := kernelConfigString(config, "CONFIG_DM_CLONE"); err == nil {
		t.Error("an option that is not set was found")
	}
}

// fakeModule writes a relocatable ELF file with only a .modinfo section
// holding the NUL-separated key=value strings of modinfo.
func fakeModule(t *testing.T, dir string, modinfo ...string) string {
	t.Helper()
	info := strings.Join(modinfo, "\x00") + "\x00"
	const shstr = "\x00.modinfo\x00.shstrtab\x00"
	infoOff := 64
	strOff := infoOff + len(info)
	shOff := (strOff + len(shstr) + 7) &^ 7
	h := elf.Header64{Type: uint16(elf.ET_REL), Machine: uint16(elf.EM_X86_64), Version: 1,
		Shoff: uint64(shOff), Ehsize: 64, Shentsize: 64, Shnum: 3, Shstrndx: 2}
	copy(h.Ident[:], "\x7fELF\x02\x01\x01")
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, h)
	b.WriteString(info)
	b.WriteString(shstr)
	for b.Len() < shOff {
		b.WriteByte(0)
	}
	binary.Write(&b, binary.LittleEndian, []elf.Section64{{},
		{Name: 1, Type: uint32(elf.SHT_PROGBITS), Flags: uint64(elf.SHF_ALLOC), Off: uint64(infoOff), Size: uint64(len(info)), Addralign: 1},
		{Name: 10, Type: uint32(elf.SHT_STRTAB), Off: uint64(strOff), Size: uint64(len(shstr)), Addralign: 1},
	})
	p := filepath.Join(dir, "dm-clone.ko")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestModinfo(t *testing.T) {
	const magic = "6.12.118+deb12-amd64 SMP preempt mod_unload modversions "
	ko := fakeModule(t, t.TempDir(), "license=GPL", "parm=a:x", "parm=b:y", "depends=dm-mod,dm-persistent-data", "name=dm_clone", "vermagic="+magic)
	info, err := moduleInfo(ko)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"license": "GPL", "parm": "a:x", "depends": "dm-mod,dm-persistent-data", "name": "dm_clone", "vermagic": magic}
	if diff := cmp.Diff(want, info); diff != "" {
		t.Errorf("modinfo (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"dm-mod", "dm-persistent-data"}, moduleDepends(info["depends"])); diff != "" {
		t.Errorf("depends (-want +got):\n%s", diff)
	}
	if d := moduleDepends(""); d != nil {
		t.Errorf("no depends = %q", d)
	}
	if r := vermagicRelease(magic); r != "6.12.118+deb12-amd64" {
		t.Errorf("vermagicRelease = %q", r)
	}
	if err := checkVermagic(magic, magic); err != nil {
		t.Error(err)
	}
	if err := checkVermagic("6.12.117+deb12-amd64 SMP preempt mod_unload modversions ", magic); err == nil {
		t.Error("another kernel's vermagic was accepted")
	}
	if err := checkVermagic("6.12.118+deb12-amd64 SMP preempt mod_unload ", magic); err == nil {
		t.Error("a vermagic without modversions was accepted")
	}
	notELF := filepath.Join(t.TempDir(), "x.ko")
	os.WriteFile(notELF, []byte("not a module"), 0o644)
	if _, err := moduleInfo(notELF); err == nil {
		t.Error("a file that is not ELF has modinfo")
	}
}

func TestRewriteIncludes(t *testing.T) {
	got, n := rewriteIncludes("include /usr/src/linux-headers-6.12.118+deb12-common/Makefile\n", "/c/dm-clone/x.partial/root")
	if n != 1 || got != "include /c/dm-clone/x.partial/root/usr/src/linux-headers-6.12.118+deb12-common/Makefile\n" {
		t.Errorf("rewriteIncludes = %q, %d", got, n)
	}
	if _, n := rewriteIncludes("include $(srctree)/Makefile\n", "/r"); n != 0 {
		t.Errorf("a relative include was rewritten")
	}
}

func TestDMCloneSourceSelection(t *testing.T) {
	for _, f := range dmCloneSources {
		if !dmCloneSource(f) {
			t.Errorf("%s is needed but not extracted", f)
		}
	}
	for _, f := range []string{"dm-crypt.c", "dm-thin.c", "persistent-data/dm-btree.c", "persistent-data/Makefile", "Kconfig", "bcache/bcache.h"} {
		if dmCloneSource(f) {
			t.Errorf("%s is extracted", f)
		}
	}
}

func TestScenarioDMCloneRefusesFirmware(t *testing.T) {
	direct := &Machine{}
	uefi := &Machine{Firmware: &Firmware{Code: OVMFCodeSecure, Vars: "vars.fd", SMM: true}}
	if err := (Scenario{DMClone: true}).validate(direct); err != nil {
		t.Errorf("direct kernel boot with DMClone: %v", err)
	}
	if err := (Scenario{}).validate(uefi); err != nil {
		t.Errorf("firmware boot without DMClone: %v", err)
	}
	err := (Scenario{DMClone: true}).validate(uefi)
	if err == nil || !strings.Contains(err.Error(), "Secure Boot") {
		t.Errorf("firmware boot with DMClone: %v, want a refusal naming Secure Boot", err)
	}
}

// TestInitramfsDMClone builds an initramfs with a fake dm-clone.ko over a
// fake module tree: /init loads crc32c_generic before libcrc32c (busybox
// insmod ignores softdeps), the dependencies from the module's .modinfo and
// modules.dep, and dm-clone last; a module built for another kernel is
// refused.
func TestInitramfsDMClone(t *testing.T) {
	testutil.LookPath(t, "busybox", "busybox-static")
	const version = "6.12.0-test"
	dir := t.TempDir()
	modDir := filepath.Join(dir, "root", "lib", "modules", version)
	dep := `kernel/drivers/md/dm-mod.ko:
kernel/drivers/md/dm-bufio.ko:
kernel/lib/libcrc32c.ko:
kernel/crypto/crc32c_generic.ko:
kernel/drivers/block/virtio_blk.ko:
kernel/drivers/md/persistent-data/dm-persistent-data.ko: kernel/drivers/md/dm-bufio.ko kernel/drivers/md/dm-mod.ko kernel/lib/libcrc32c.ko
`
	for _, l := range strings.Split(strings.TrimSpace(dep), "\n") {
		rel, _, _ := strings.Cut(l, ":")
		p := filepath.Join(modDir, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("module "+rel), 0o644)
	}
	for name, data := range map[string]string{"modules.dep": dep, "modules.builtin": "", "modules.alias": ""} {
		if err := os.WriteFile(filepath.Join(modDir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	k := &KernelInfo{Version: version, ModulesDir: modDir, Dir: dir}
	ko := fakeModule(t, dir, "depends=dm-mod,dm-persistent-data", "name=dm_clone", "vermagic="+version+" SMP preempt mod_unload modversions ")
	out := filepath.Join(dir, "initrd.cpio")
	ir := Initramfs{Modules: []string{"virtio_blk", "dm-mod"}, ModuleDirs: []string{}, Init: "true\n", DMClone: ko}
	if err := ir.Build(context.Background(), k, out); err != nil {
		t.Fatal(err)
	}
	archive, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	// The newc archive holds /init's text as it is.
	start := bytes.Index(archive, []byte("# confidisk lab /init (generated)"))
	if start < 0 {
		t.Fatal("no /init in the archive")
	}
	var loads []string
	for _, m := range regexp.MustCompile(`(?m)^lab_load (\S+) (\S+)$`).FindAllSubmatch(archive[start:], -1) {
		loads = append(loads, string(m[1])+" "+string(m[2]))
	}
	base := "/lib/modules/" + version + "/"
	want := []string{
		"crc32c_generic " + base + "kernel/crypto/crc32c_generic.ko",
		"virtio_blk " + base + "kernel/drivers/block/virtio_blk.ko",
		"dm_mod " + base + "kernel/drivers/md/dm-mod.ko",
		"dm_bufio " + base + "kernel/drivers/md/dm-bufio.ko",
		"libcrc32c " + base + "kernel/lib/libcrc32c.ko",
		"dm_persistent_data " + base + "kernel/drivers/md/persistent-data/dm-persistent-data.ko",
		"dm_clone " + base + "extra/dm-clone.ko",
	}
	if diff := cmp.Diff(want, loads); diff != "" {
		t.Errorf("/init loads (-want +got):\n%s", diff)
	}
	if !bytes.Contains(archive, []byte(base+"extra/dm-clone.ko")) || !bytes.Contains(archive, []byte("vermagic="+version)) {
		t.Error("the archive does not carry dm-clone.ko")
	}

	other := fakeModule(t, t.TempDir(), "depends=dm-mod", "vermagic=6.12.1+deb12-amd64 SMP preempt mod_unload modversions ")
	ir.DMClone = other
	err = ir.Build(context.Background(), k, out)
	if err == nil || !strings.Contains(err.Error(), "6.12.1+deb12-amd64") {
		t.Errorf("a module for another kernel: %v, want a refusal naming its kernel", err)
	}
}

// TestDMCloneModuleMissingCompiler: a kernel built with a compiler the host
// lacks gives a *MissingToolError naming the compiler's package (the path
// to testutil.Missing), before anything is downloaded or cached.
func TestDMCloneModuleMissingCompiler(t *testing.T) {
	cache := t.TempDir()
	const version = "6.12.0+deb12-amd64"
	boot := filepath.Join(cache, "kernel", version, "root", "boot")
	os.MkdirAll(boot, 0o755)
	os.WriteFile(filepath.Join(boot, "config-"+version), []byte("CONFIG_CC_VERSION_TEXT=\"x86_64-linux-gnu-gcc-99 (Debian 99.1.0-1) 99.1.0\"\n"), 0o644)
	k := kernelAt(filepath.Join(cache, "kernel"), version)
	_, err := DMCloneModule(context.Background(), cache, k)
	var mt *MissingToolError
	if !errors.As(err, &mt) || mt.Tool != "x86_64-linux-gnu-gcc-99" || mt.Package != "gcc-99" {
		t.Fatalf("DMCloneModule = %v, want a missing gcc-99", err)
	}
	if dmCloneCached(cache, k) || fileExists(filepath.Join(cache, "dm-clone", version+".partial")) {
		t.Error("a failed build left a module or a build directory")
	}
}
