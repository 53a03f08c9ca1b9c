package initrd

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

func TestLddPaths(t *testing.T) {
	out := `	linux-vdso.so.1 (0x00007ffc0b5f2000)
	libext2fs.so.2 => /lib/x86_64-linux-gnu/libext2fs.so.2 (0x00007f0c1c3a5000)
	libmissing.so.1 => not found
	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0c1c1c4000)
	/lib64/ld-linux-x86-64.so.2 (0x00007f0c1c46a000)
`
	want := []string{"/lib/x86_64-linux-gnu/libext2fs.so.2", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"}
	if diff := cmp.Diff(want, LddPaths(out)); diff != "" {
		t.Errorf("lddPaths (-want +got):\n%s", diff)
	}
}

// fakeKernel writes a module index like depmod's into a temporary directory.
func fakeModules(t *testing.T) *Modules {
	t.Helper()
	dir := t.TempDir()
	modDir := filepath.Join(dir, "lib/modules/6.12.0-test")
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
	if err := os.MkdirAll(modDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(modDir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m, err := LoadModules("6.12.0-test", modDir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestModulePlan(t *testing.T) {
	idx := fakeModules(t)
	tests := []struct {
		name    string
		modules []string
		dirs    []string
		want    ModulePlan
		wantErr bool
	}{
		{
			name:    "dependencies first, builtins skipped",
			modules: []string{"dm_verity", "tpm-crb", "dm-mod"},
			want: ModulePlan{
				Load: []string{"kernel/drivers/md/dm-bufio.ko.xz", "kernel/drivers/md/dm-mod.ko.xz", "kernel/lib/reed_solomon/reed_solomon.ko.xz", "kernel/drivers/md/dm-verity.ko.xz"},
				Ship: []string{"kernel/drivers/md/dm-bufio.ko.xz", "kernel/drivers/md/dm-mod.ko.xz", "kernel/drivers/md/dm-verity.ko.xz", "kernel/lib/reed_solomon/reed_solomon.ko.xz"},
			},
		},
		{
			name: "directories ship with dependencies, not loaded",
			dirs: []string{"kernel/crypto/"},
			want: ModulePlan{
				Ship: []string{"kernel/crypto/authenc.ko.xz", "kernel/crypto/xts.ko.xz", "kernel/lib/crypto/libaes.ko.xz"},
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
			got, err := idx.Plan(tt.modules, tt.dirs)
			if (err != nil) != tt.wantErr {
				t.Fatalf("plan: %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
		})
	}
}

// TestBuildIsReproducible builds an initrd twice from a fake module tree
// and checks with the host's cpio that /init loads the modules in
// dependency order before handing over to confidisk, and that both builds
// are byte-identical.
func TestBuildIsReproducible(t *testing.T) {
	cpio := testutil.LookPath(t, "cpio", "cpio")
	testutil.LookPath(t, "busybox", "busybox-static")
	dir := t.TempDir()
	modDir := filepath.Join(dir, "lib/modules/6.12.0-test")
	files := map[string]string{
		"modules.dep":                    "kernel/drivers/md/dm-mod.ko:\nkernel/drivers/md/dm-verity.ko: kernel/drivers/md/dm-mod.ko\n",
		"modules.builtin":                "kernel/drivers/char/tpm/tpm_crb.ko\n",
		"modules.alias":                  "alias dm-verity-x dm_verity\nalias other other_mod\n",
		"kernel/drivers/md/dm-mod.ko":    "dm-mod",
		"kernel/drivers/md/dm-verity.ko": "dm-verity",
	}
	for name, data := range files {
		p := filepath.Join(modDir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "confidisk")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	mods, err := LoadModules("6.12.0-test", modDir)
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{Modules: mods, Load: []string{"dm-verity", "tpm_crb"}, ShipDirs: []string{}, Confidisk: bin, Tools: []string{},
		Files: map[string]string{"/etc/confidisk/boot.conf": bin}, BootArgs: []string{"--config", "/etc/confidisk/boot.conf"}}
	var one, two bytes.Buffer
	if err := Build(context.Background(), spec, &one); err != nil {
		t.Fatal(err)
	}
	if err := Build(context.Background(), spec, &two); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(one.Bytes(), two.Bytes()) {
		t.Error("two builds of the same spec differ")
	}
	out := t.TempDir()
	c := exec.Command(cpio, "-idm", "--quiet")
	c.Dir, c.Stdin = out, bytes.NewReader(one.Bytes())
	if b, err := c.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v: %s", err, b)
	}
	init, err := os.ReadFile(filepath.Join(out, "init"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(init)
	i := strings.Index(s, "load_module dm_mod /lib/modules/6.12.0-test/kernel/drivers/md/dm-mod.ko\n")
	j := strings.Index(s, "load_module dm_verity /lib/modules/6.12.0-test/kernel/drivers/md/dm-verity.ko\n")
	k := strings.Index(s, "exec /bin/confidisk boot --on-failure poweroff --config /etc/confidisk/boot.conf\n")
	if i < 0 || j < i || k < j {
		t.Errorf("/init does not load dm_mod, then dm_verity, then exec confidisk boot:\n%s", s)
	}
	alias, err := os.ReadFile(filepath.Join(out, "lib/modules/6.12.0-test/modules.alias"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("alias dm-verity-x dm_verity\n", string(alias)); diff != "" {
		t.Errorf("modules.alias keeps only shipped modules (-want +got):\n%s", diff)
	}
	for _, p := range []string{"bin/busybox", "bin/sh", "bin/confidisk", "etc/confidisk/boot.conf", "dev/console", "sysroot"} {
		if _, err := os.Lstat(filepath.Join(out, p)); err != nil {
			t.Errorf("initrd lacks /%s: %v", p, err)
		}
	}
}

func TestBuildRefuses(t *testing.T) {
	testutil.LookPath(t, "busybox", "busybox-static")
	bin := filepath.Join(t.TempDir(), "confidisk")
	if err := os.WriteFile(bin, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		spec Spec
		want string
	}{
		{"no confidisk", Spec{Tools: []string{}}, "no confidisk binary"},
		{"relative guest path", Spec{Confidisk: bin, Tools: []string{}, Files: map[string]string{"etc/x": bin}}, `guest path "etc/x" is not absolute`},
		{"missing file", Spec{Confidisk: bin, Tools: []string{}, Files: map[string]string{"/etc/x": bin + ".missing"}}, "no such file"},
		{"missing tool", Spec{Confidisk: bin, Tools: []string{"no-such-tool-here"}}, "no-such-tool-here not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Build(context.Background(), tt.spec, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Build: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{"--config": "--config", "a b": "'a b'", "it's": `'it'\''s'`, "": "''", "/x=y:1": "/x=y:1"} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %q, want %q", in, got, want)
		}
	}
}
