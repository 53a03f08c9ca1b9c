package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/confidisk/confidisk/internal/testutil"
	"github.com/confidisk/confidisk/lab"
	"github.com/confidisk/confidisk/luks2"
)

// luksPreamble defines helpers for the LUKS scenarios.
const luksPreamble = `
export DM_DISABLE_UDEV=1
printf 'correct horse battery staple' > /key
fast="--pbkdf pbkdf2 --pbkdf-force-iterations 1000"
# A pattern as large as the volume can hold, from /dev/urandom once.
pattern() { # device: write random data over it and print its sha256
	n=$(( $(blockdev --getsize64 "$1") / 1048576 ))
	dd if=/dev/urandom of=/pattern bs=1M count=$n 2>/dev/null
	dd if=/pattern of="$1" bs=1M conv=fsync 2>/dev/null || return 1
	sha256sum /pattern | cut -d' ' -f1
}
readsum() { dd if="$1" bs=1M count=$(( $(stat -c %s /pattern) / 1048576 )) 2>/dev/null | sha256sum | cut -d' ' -f1; }
tables() { # name: both tables of an open volume, integrity first
	dmsetup table "$1_dif" 2>/dev/null; dmsetup table "$1"
}
`

// TestLabLUKSInterop: volumes formatted by confidisk open with cryptsetup in
// the kernel and the other way round, with and without integrity; data
// written by one reads back through the other; the tables are the same.
func TestLabLUKSInterop(t *testing.T) {
	bin := lab.ConfidiskBinary(t)
	testutil.LookPath(t, "cryptsetup", "cryptsetup-bin")
	testutil.LookPath(t, "dmsetup", "dmsetup")
	tweaked := ivTweakedVolume(t)
	lab.RunScenario(t, lab.Scenario{
		Name:  "luks-interop",
		Disks: []lab.Disk{{Size: 48 << 20}, {Size: 48 << 20}, {Size: 48 << 20}, {Size: 48 << 20}, {Path: tweaked}},
		Files: map[string]string{"/bin/confidisk": bin},
		Tools: []string{"cryptsetup", "dmsetup", "blockdev"},
		Script: luksPreamble + `
# 1. confidisk formats with hmac-sha256 integrity; cryptsetup writes, confidisk reads.
check ours-format-hmac confidisk luks format -q --integrity hmac-sha256 $fast --key-file /key /dev/vda
check theirs-open-ours cryptsetup open --key-file /key /dev/vda theirs
sum=$(pattern /dev/mapper/theirs) && result theirs-write ok "$sum" || result theirs-write fail "$sum"
theirs_tables=$(tables theirs)
check theirs-close cryptsetup close theirs
check ours-open-ours confidisk luks open --key-file /key /dev/vda theirs
got=$(readsum /dev/mapper/theirs)
[ "$got" = "$sum" ] && result ours-read-theirs ok "$got" || result ours-read-theirs fail "want $sum got $got"
ours_tables=$(tables theirs)
[ -n "$ours_tables" ] && [ "$ours_tables" = "$theirs_tables" ] && result same-tables-hmac ok "$ours_tables" || result same-tables-hmac fail "cryptsetup: $theirs_tables / confidisk: $ours_tables"
check ours-close confidisk luks close theirs
check nothing-left sh -c 'test "$(ls /dev/mapper)" = control'

# 2. cryptsetup formats with integrity; confidisk writes, cryptsetup reads.
check theirs-format-hmac cryptsetup luksFormat -q --type luks2 --integrity hmac-sha256 $fast --key-file /key /dev/vdb
check ours-open-theirs confidisk luks open --key-file /key /dev/vdb v
sum=$(pattern /dev/mapper/v) && result ours-write ok "$sum" || result ours-write fail "$sum"
check ours-close-2 confidisk luks close v
check theirs-open-theirs cryptsetup open --key-file /key /dev/vdb v
got=$(readsum /dev/mapper/v)
[ "$got" = "$sum" ] && result theirs-read-ours ok "$got" || result theirs-read-ours fail "want $sum got $got"
check theirs-close-2 cryptsetup close v

# 3. AEAD (aes-gcm-random) and 512-byte sectors, formatted by confidisk.
check ours-format-aead confidisk luks format -q --cipher aes-gcm-random --integrity aead --sector-size 512 $fast --key-file /key /dev/vdc
check theirs-open-aead cryptsetup open --key-file /key /dev/vdc a
theirs_tables=$(tables a)
check theirs-close-aead cryptsetup close a
check ours-open-aead confidisk luks open --key-file /key /dev/vdc a
ours_tables=$(tables a)
[ -n "$ours_tables" ] && [ "$ours_tables" = "$theirs_tables" ] && result same-tables-aead ok "$ours_tables" || result same-tables-aead fail "cryptsetup: $theirs_tables / confidisk: $ours_tables"
check zeros-after-wipe sh -c 'test "$(dd if=/dev/mapper/a bs=1M count=1 2>/dev/null | tr -d "\000" | wc -c)" = 0'
check ours-close-aead confidisk luks close a

# 4. No integrity: confidisk formats, cryptsetup opens, tables equal.
check ours-format-plain confidisk luks format -q $fast --key-file /key /dev/vdd
check theirs-open-plain cryptsetup open --key-file /key /dev/vdd p
theirs_tables=$(tables p)
check theirs-close-plain cryptsetup close p
check ours-open-plain confidisk luks open --key-file /key /dev/vdd p
ours_tables=$(tables p)
[ -n "$ours_tables" ] && [ "$ours_tables" = "$theirs_tables" ] && result same-tables-plain ok "$ours_tables" || result same-tables-plain fail "cryptsetup: $theirs_tables / confidisk: $ours_tables"
check ours-close-plain confidisk luks close p
check wrong-passphrase-refused sh -c 'printf nope > /bad; ! /bin/confidisk luks open --key-file /bad /dev/vdd p && test "$(ls /dev/mapper)" = control'

# 5. A cryptsetup volume whose segment has iv_tweak 2048: cryptsetup writes,
#    confidisk reads the same bytes, through the same table (cryptsetup
#    uses iv_tweak only while reencrypting: iv_offset 0 here).
check theirs-open-tweak cryptsetup open --key-file /key /dev/vde tw
sum=$(pattern /dev/mapper/tw) && result theirs-write-tweak ok "$sum" || result theirs-write-tweak fail "$sum"
theirs_tables=$(tables tw)
check theirs-close-tweak cryptsetup close tw
check ours-open-tweak confidisk luks open --key-file /key /dev/vde tw
got=$(readsum /dev/mapper/tw)
[ "$got" = "$sum" ] && result iv-tweak-read ok "$got" || result iv-tweak-read fail "want $sum got $got"
ours_tables=$(tables tw)
[ -n "$ours_tables" ] && [ "$ours_tables" = "$theirs_tables" ] && result same-tables-tweak ok "$ours_tables" || result same-tables-tweak fail "cryptsetup: $theirs_tables / confidisk: $ours_tables"
check ours-close-tweak confidisk luks close tw
`,
		Expect: []string{"ours-read-theirs", "same-tables-hmac", "theirs-read-ours", "same-tables-aead", "zeros-after-wipe", "same-tables-plain", "nothing-left", "wrong-passphrase-refused",
			"iv-tweak-read", "same-tables-tweak"},
		Timeout: 15 * time.Minute,
	})
}

// ivTweakedVolume is a 48 MiB image formatted by cryptsetup (no integrity,
// so the host's cryptsetup can do it without device-mapper) whose segment's
// iv_tweak is then set to 2048 (a value only a reencryption uses).
func ivTweakedVolume(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	img, key := filepath.Join(dir, "tweak.img"), filepath.Join(dir, "key")
	os.WriteFile(key, []byte("correct horse battery staple"), 0o600)
	if err := os.WriteFile(img, nil, 0o600); err != nil || os.Truncate(img, 48<<20) != nil {
		t.Fatal(err)
	}
	cs := testutil.LookPath(t, "cryptsetup", "cryptsetup-bin")
	if out, err := exec.Command(cs, "luksFormat", "-q", "--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
		"--key-file", key, img).CombinedOutput(); err != nil {
		t.Fatalf("cryptsetup luksFormat: %v: %s", err, out)
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, _, err := luks2.Read(f)
	if err != nil {
		t.Fatal(err)
	}
	h.Metadata.Segments[0].IVTweak = 2048
	if err := h.Write(f); err != nil {
		t.Fatal(err)
	}
	return img
}

// TestLabLUKSTamper: one flipped ciphertext byte in a volume with integrity
// gives an I/O error, never different data.
func TestLabLUKSTamper(t *testing.T) {
	bin := lab.ConfidiskBinary(t)
	lab.RunScenario(t, lab.Scenario{
		Name:  "luks-ciphertext-tamper",
		Disks: []lab.Disk{{Size: 48 << 20}},
		Files: map[string]string{"/bin/confidisk": bin},
		Tools: []string{"blockdev"},
		Script: luksPreamble + `
check format confidisk luks format -q --integrity hmac-sha256 $fast --key-file /key /dev/vda
check open confidisk luks open --key-file /key /dev/vda t
sum=$(pattern /dev/mapper/t) && result write ok "$sum" || result write fail "$sum"
check close confidisk luks close t
# Flip one byte 40 MiB into the raw device: data or tag of some sector.
dd if=/dev/vda bs=1 skip=41943040 count=1 2>/dev/null | tr '\000-\377' '\001-\377\000' > /flip
check flip dd if=/flip of=/dev/vda bs=1 seek=41943040 conv=notrunc,fsync
check reopen confidisk luks open --key-file /key /dev/vda t
out=$(dd if=/dev/mapper/t of=/dev/null bs=1M 2>&1); rc=$?
case "$rc:$out" in
  0:*) result tamper-detected fail "the whole volume read back without an error" ;;
  *"I/O error"*|*"Input/output error"*) result tamper-detected ok "$(echo "$out" | head -1)" ;;
  *) result tamper-detected fail "rc=$rc: $out" ;;
esac
check kernel-logs-integrity sh -c 'dmesg | grep -iE "integrity|checksum" | tail -2'
`,
		Expect: []string{"write", "flip", "tamper-detected"},
	})
}
