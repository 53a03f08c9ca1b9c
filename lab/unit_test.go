package lab

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/internal/testutil"
)

func TestCPIOWriterListsInHostCPIO(t *testing.T) {
	cpio := testutil.LookPath(t, "cpio", "cpio")
	var buf bytes.Buffer
	w := NewCPIOWriter(&buf)
	steps := []error{
		w.Dir("/bin", 0o755),
		w.File("/bin/tool", 0o755, []byte("#!/bin/sh\necho hi\n")),
		w.Symlink("/bin/sh", "/bin/busybox"),
		w.Dir("/dev", 0o755),
		w.CharDevice("/dev/console", 0o600, 5, 1),
		w.File("/empty", 0o644, nil),
		w.Close(),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d is not a multiple of 4", buf.Len())
	}
	cmd := exec.Command(cpio, "-tv", "--quiet")
	cmd.Stdin = &buf
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -tv: %v", err)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		// mode links owner group size|major,minor month day year|time name [-> target]
		name := f[8]
		if f[4][len(f[4])-1] == ',' { // devices show "5, 1" as the size
			name = f[9]
		}
		got = append(got, f[0]+" "+name)
	}
	want := []string{
		"drwxr-xr-x bin",
		"-rwxr-xr-x bin/tool",
		"lrwxrwxrwx bin/sh",
		"drwxr-xr-x dev",
		"crw------- dev/console",
		"-rw-r--r-- empty",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("cpio -tv listing (-want +got):\n%s\nraw:\n%s", diff, out)
	}
}

func TestCPIOWriterExtractsWithHostCPIO(t *testing.T) {
	cpio := testutil.LookPath(t, "cpio", "cpio")
	files := map[string]string{
		"a":                                "",
		"dir/b":                            "x",
		"dir/cc":                           "xy",
		"dir/sub/d3":                       "xyz",
		"long-" + strings.Repeat("n", 100): strings.Repeat("data", 1000) + "!",
	}
	var buf bytes.Buffer
	w := NewCPIOWriter(&buf)
	for _, d := range []string{"dir", "dir/sub"} {
		if err := w.Dir(d, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range files {
		if err := w.File(name, 0o640, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Symlink("link", "dir/b"); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command(cpio, "-i", "--quiet", "--no-absolute-filenames")
	cmd.Dir = dir
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v: %s", err, out)
	}
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		got[rel] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(files, got); diff != "" {
		t.Errorf("extracted files (-want +got):\n%s", diff)
	}
	if target, err := os.Readlink(filepath.Join(dir, "link")); err != nil || target != "dir/b" {
		t.Errorf("link: %q, %v; want dir/b", target, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "dir/b")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("dir/b mode: %v, %v; want 0640", fi.Mode(), err)
	}
}

func TestCPIOWriterRejectsBadNames(t *testing.T) {
	for _, name := range []string{"", "/", "a\x00b"} {
		w := NewCPIOWriter(&bytes.Buffer{})
		if err := w.File(name, 0o644, nil); err == nil {
			t.Errorf("File(%q) succeeded, want an error", name)
		}
	}
}

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"6.12.117+deb12-amd64", "6.12.115+deb12-amd64", 1},
		{"6.12.9+deb12-amd64", "6.12.10+deb12-amd64", -1},
		{"6.12.10+deb12-amd64", "6.12.10+deb12-amd64", 0},
		{"1.0~rc1", "1.0", -1},
		{"1.0a", "1.0+", -1},
		{"1.0", "1.0.1", -1},
		{"1.01", "1.1", 0},
		{"2", "10", -1},
	}
	for _, tt := range tests {
		if got := compareVersions(tt.a, tt.b); got != tt.want {
			t.Errorf("compareVersions(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := compareVersions(tt.b, tt.a); got != -tt.want {
			t.Errorf("compareVersions(%q, %q) = %d, want %d", tt.b, tt.a, got, -tt.want)
		}
	}
}

func TestNewestKernel(t *testing.T) {
	tests := []struct {
		name, out, want string
	}{
		{"empty", "", ""},
		{"picks highest numerically", `linux-image-6.12.9+deb12-amd64-unsigned - Linux 6.12 for 64-bit PCs
linux-image-6.12.117+deb12-amd64-unsigned - Linux 6.12 for 64-bit PCs
linux-image-6.12.43+deb12-amd64-unsigned - Linux 6.12 for 64-bit PCs
`, "6.12.117+deb12-amd64"},
		{"ignores other flavours", `linux-image-6.12.200+deb12-cloud-amd64-unsigned - x
linux-image-6.12.200+deb12-amd64-dbg - x
linux-image-6.12.1+deb12-amd64-unsigned - x
`, "6.12.1+deb12-amd64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := newestKernel(tt.out); got != tt.want {
				t.Errorf("newestKernel = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestKernelVersionPinned(t *testing.T) {
	tests := []struct {
		pinned, want string
		wantErr      bool
	}{
		{"6.12.115+deb12-amd64", "6.12.115+deb12-amd64", false},
		{"linux-image-6.12.115+deb12-amd64-unsigned", "6.12.115+deb12-amd64", false},
		{"6.12 oops", "", true},
		{"../x/y", "", true},
	}
	for _, tt := range tests {
		got, err := kernelVersion(context.Background(), tt.pinned)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("kernelVersion(%q) = %q, %v; want %q, error %v", tt.pinned, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseLine(t *testing.T) {
	type ev struct{ Event, Arg string }
	tests := []struct {
		line string
		want ev
	}{
		{"LAB-INIT 3.12", ev{"init", "3.12"}},
		{"POINT before-write", ev{"point", "before-write"}},
		{"RESULT mkfs ok ", ev{"result", "mkfs ok"}},
		{"RESULT x fail exit 1: POINT y", ev{"result", "x fail exit 1: POINT y"}},
		{"[    5.2] dm: RESULT a ok", ev{"result", "a ok"}},
		{"LAB-DONE 0", ev{"done", "0"}},
		{"NORESULT a ok", ev{}},
		{"KVM internal error. Suberror: 1", ev{"kvm-error", ""}},
		{"just a line", ev{}},
	}
	for _, tt := range tests {
		var got ev
		got.Event, got.Arg = parseLine(tt.line)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("parseLine(%q) (-want +got):\n%s", tt.line, diff)
		}
	}
}

func TestParseResult(t *testing.T) {
	tests := []struct {
		in   string
		want Result
	}{
		{"a ok", Result{Name: "a", OK: true}},
		{"a ok some detail  here", Result{Name: "a", OK: true, Detail: "some detail  here"}},
		{"b fail exit 1: x", Result{Name: "b", Detail: "exit 1: x"}},
		{"c maybe", Result{Name: "c"}},
		{"d", Result{Name: "d"}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, parseResult(tt.in)); diff != "" {
			t.Errorf("parseResult(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestLddPaths(t *testing.T) {
	out := `	linux-vdso.so.1 (0x00007ffc0b5f2000)
	libext2fs.so.2 => /lib/x86_64-linux-gnu/libext2fs.so.2 (0x00007f0c1c3a5000)
	libmissing.so.1 => not found
	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0c1c1c4000)
	/lib64/ld-linux-x86-64.so.2 (0x00007f0c1c46a000)
`
	want := []string{"/lib/x86_64-linux-gnu/libext2fs.so.2", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"}
	if diff := cmp.Diff(want, lddPaths(out)); diff != "" {
		t.Errorf("lddPaths (-want +got):\n%s", diff)
	}
}

// fakeKernel writes a module index like depmod's into a temporary directory.
func fakeKernel(t *testing.T) *KernelInfo {
	t.Helper()
	dir := t.TempDir()
	k := &KernelInfo{Version: "6.12.0-test", Dir: dir, ModulesDir: filepath.Join(dir, "lib/modules/6.12.0-test")}
	files := map[string]string{
		"modules.dep": `kernel/drivers/md/dm-mod.ko.xz:
kernel/drivers/md/dm-bufio.ko.xz:
kernel/lib/reed_solomon/reed_solomon.ko.xz:
kernel/drivers/md/dm-verity.ko.xz: kernel/drivers/md/dm-bufio.ko.xz kernel/drivers/md/dm-mod.ko.xz kernel/lib/reed_solomon/reed_solomon.ko.xz
kernel/crypto/xts.ko.xz:
kernel/crypto/authenc.ko.xz: kernel/lib/crypto/libaes.ko.xz
kernel/lib/crypto/libaes.ko.xz:
kernel/fs/ext4/ext4.ko.xz: kernel/fs/jbd2/jbd2.ko.xz
kernel/fs/jbd2/jbd2.ko.xz:
`,
		"modules.builtin": "kernel/drivers/char/tpm/tpm_crb.ko\nkernel/drivers/virtio/virtio_pci.ko\n",
	}
	if err := os.MkdirAll(k.ModulesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(k.ModulesDir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

func TestModulePlan(t *testing.T) {
	idx, err := loadModuleIndex(fakeKernel(t))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		modules []string
		dirs    []string
		want    modulePlan
		wantErr bool
	}{
		{
			name:    "dependencies first, builtins skipped",
			modules: []string{"dm_verity", "tpm-crb", "dm-mod"},
			want: modulePlan{
				load: []string{"kernel/drivers/md/dm-bufio.ko.xz", "kernel/drivers/md/dm-mod.ko.xz", "kernel/lib/reed_solomon/reed_solomon.ko.xz", "kernel/drivers/md/dm-verity.ko.xz"},
				ship: []string{"kernel/drivers/md/dm-bufio.ko.xz", "kernel/drivers/md/dm-mod.ko.xz", "kernel/drivers/md/dm-verity.ko.xz", "kernel/lib/reed_solomon/reed_solomon.ko.xz"},
			},
		},
		{
			name: "directories ship with dependencies, not loaded",
			dirs: []string{"kernel/crypto/"},
			want: modulePlan{
				ship: []string{"kernel/crypto/authenc.ko.xz", "kernel/crypto/xts.ko.xz", "kernel/lib/crypto/libaes.ko.xz"},
			},
		},
		{
			name:    "unknown module",
			modules: []string{"dm-clone"},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := idx.plan(tt.modules, tt.dirs)
			if (err != nil) != tt.wantErr {
				t.Fatalf("plan: %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(modulePlan{})); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
		})
	}
}

func TestInitScriptLoadsInOrder(t *testing.T) {
	s := initScript("6.12.0-test", []string{"kernel/drivers/md/dm-mod.ko.xz", "kernel/drivers/md/dm-verity.ko.xz"})
	i := strings.Index(s, "lab_load dm_mod /lib/modules/6.12.0-test/kernel/drivers/md/dm-mod.ko\n")
	j := strings.Index(s, "lab_load dm_verity /lib/modules/6.12.0-test/kernel/drivers/md/dm-verity.ko\n")
	if i < 0 || j < 0 || i > j {
		t.Errorf("init script does not load dm_mod then dm_verity:\n%s", s)
	}
	if !strings.Contains(s, "LAB-DONE") || !strings.Contains(s, "poweroff -f") {
		t.Errorf("init script lacks LAB-DONE or poweroff:\n%s", s)
	}
}

func TestPreambleHelpers(t *testing.T) {
	busybox := testutil.LookPath(t, "busybox", "busybox-static")
	script := strings.Replace(Preamble, "$(cat /proc/cmdline)", "lab.cut=here quiet", 1) + `
result r1 ok fine
result r2 fail "two
lines"
check c1 true
check c2 sh -c 'echo out; exit 3' || echo "status $?"
point elsewhere
`
	out, err := exec.Command(busybox, "sh", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("preamble: %v: %s", err, out)
	}
	want := `RESULT r1 ok fine
RESULT r2 fail two lines
RESULT c1 ok 
RESULT c2 fail exit 3: out
status 3
POINT elsewhere
`
	if diff := cmp.Diff(want, string(out)); diff != "" {
		t.Errorf("preamble output (-want +got):\n%s", diff)
	}
}
