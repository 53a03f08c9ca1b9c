package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/confidisk/confidisk/internal/testutil"
	"github.com/confidisk/confidisk/lab"
)

// dmCloneScript clones the read-only source vda onto vdb with its metadata
// on vdc (64 KiB regions), checks that the clone reads as the source before
// any hydration, hydrates it and waits until every region is copied.
// SRC_SHA256 is the source's digest, computed on the host.
const dmCloneScript = `
export DM_DISABLE_UDEV=1
check dm-clone-loaded test -d /sys/module/dm_clone
# O: out of tree, E: unsigned (the kernel has CONFIG_MODULE_SIG without _FORCE).
check dm-clone-tainted grep -q E /sys/module/dm_clone/taint
check clone-target sh -c 'dmsetup targets | grep "^clone "'
check source-read-only test "$(cat /sys/block/vda/ro)" = 1
sectors=$(cat /sys/block/vda/size)
check clone-create dmsetup create cl --table "0 $sectors clone /dev/vdc /dev/vdb /dev/vda 128 1 no_hydration" || exit 1
check read-through sh -c "test \"\$(sha256sum </dev/mapper/cl | cut -d' ' -f1)\" = $SRC_SHA256"
check hydration-enabled dmsetup message cl 0 enable_hydration
# Status: <start> <len> clone <metadata block size> <used>/<total metadata
# blocks> <region size> <hydrated>/<total regions> <in flight> <features>...
i=0
while :; do
	st=$(dmsetup status cl)
	set -- $st
	hydrated=${7%/*} total=${7#*/}
	case "$st" in *" Fail"*) result hydrated fail "clone failed: $st"; break ;; esac
	if [ -n "$total" ] && [ "$hydrated" = "$total" ]; then
		result hydrated ok "$hydrated/$total regions after ${i} polls: $st"
		break
	fi
	i=$((i + 1))
	if [ $i -ge 240 ]; then
		result hydrated fail "not hydrated after 120s: $st"
		break
	fi
	sleep 0.5
done
check clone-removed dmsetup remove cl
`

// TestLabDMCloneModule boots the lab kernel with dm-clone.ko, built out of
// tree for it (Debian's kernel has no dm-clone), and clones a read-only
// disk of random data: the target is loaded, the clone reads as the source
// before hydration, and once hydrated the destination disk, read on the
// host, equals the source, which is unchanged.
func TestLabDMCloneModule(t *testing.T) {
	testutil.LookPath(t, "dmsetup", "dmsetup")
	const size = 32 << 20
	src := filepath.Join(t.TempDir(), "source.img")
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	m := lab.TestMachine(t,
		lab.Disk{Path: src, ReadOnly: true}, // vda: the source
		lab.Disk{Size: size},                // vdb: the destination, zeros
		lab.Disk{Size: 4 << 20},             // vdc: metadata, formatted by the kernel
	)
	lab.RunScenario(t, lab.Scenario{
		Name:    "dm-clone-module",
		Machine: m,
		DMClone: true,
		Tools:   []string{"dmsetup"},
		Script:  fmt.Sprintf("SRC_SHA256=%s\n", hex.EncodeToString(sum[:])) + dmCloneScript,
		Expect: []string{"dm-clone-loaded", "dm-clone-tainted", "clone-target", "source-read-only", "clone-create",
			"read-through", "hydration-enabled", "hydrated", "clone-removed"},
	})
	if after, err := os.ReadFile(src); err != nil || !bytes.Equal(after, data) {
		t.Errorf("the read-only source changed (read error %v)", err)
	}
	dst, err := os.ReadFile(m.Disks[1].Path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dst, data) {
		t.Errorf("the hydrated destination differs from the source: %s", firstDifference(dst, data))
	}
}

// firstDifference describes where got first differs from want.
func firstDifference(got, want []byte) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d bytes, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			return fmt.Sprintf("first at byte %d (64 KiB region %d)", i, i/(64<<10))
		}
	}
	return "no difference"
}
