package lab

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/internal/testutil"
)

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

func TestInitScriptLoadsInOrder(t *testing.T) {
	s := initScript([]string{"/lib/modules/6.12.0-test/kernel/drivers/md/dm-mod.ko", "/lib/modules/6.12.0-test/kernel/drivers/md/dm-verity.ko"})
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
