package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/confidisk/confidisk/internal/faultdev"
	"github.com/confidisk/confidisk/luks2"
)

// faultEnv is a small LUKS2 image made through the CLI, with key files for
// the passphrases p0, p1 and p2.
type faultEnv struct {
	t   *testing.T
	dir string
	img string
}

func newFaultEnv(t *testing.T) *faultEnv {
	e := &faultEnv{t: t, dir: t.TempDir()}
	e.img = filepath.Join(e.dir, "disk.img")
	if err := os.WriteFile(e.img, make([]byte, 3<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"p0", "p1", "p2"} {
		os.WriteFile(e.key(p), []byte(p), 0o600)
	}
	os.WriteFile(e.path("token.json"), []byte(`{"type":"confidisk-test","keyslots":["0"],"x":1}`), 0o600)
	e.run("luks", "format", "-q", "--key-file", e.key("p0"), "--offset", "4096", "--luks2-keyslots-size", "2064384", e.img)
	return e
}

func (e *faultEnv) path(name string) string { return filepath.Join(e.dir, name) }
func (e *faultEnv) key(p string) string     { return e.path("key-" + p) }

// run runs a command on the real image file (setup), failing the test on error.
func (e *faultEnv) run(args ...string) {
	e.t.Helper()
	if args[1] == "format" || args[1] == "add-key" || args[1] == "change-key" {
		args = append(append(args[:2:2], fastKDF...), args[2:]...)
	}
	if _, errOut, err := runIn(e.t, "", args...); err != nil {
		e.t.Fatalf("%v: %v\n%s", args, err, errOut)
	}
}

// corrupt overwrites a few bytes of the image.
func (e *faultEnv) corrupt(off int64) {
	f, err := os.OpenFile(e.img, os.O_RDWR, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	f.WriteAt([]byte("garbage"), off)
}

// faultOps are the write commands proven against power cuts and I/O
// errors: setup prepares the image, args is the command under test.
var faultOps = []struct {
	name  string
	setup func(e *faultEnv)
	args  func(e *faultEnv) []string
}{
	{"add-key", func(e *faultEnv) {}, func(e *faultEnv) []string {
		return append(append([]string{"luks", "add-key", "--key-file", e.key("p0")}, fastKDF...), e.img, e.key("p1"))
	}},
	{"change-key", func(e *faultEnv) {}, func(e *faultEnv) []string {
		return append(append([]string{"luks", "change-key", "--key-file", e.key("p0")}, fastKDF...), e.img, e.key("p1"))
	}},
	{"remove-key", func(e *faultEnv) { e.run("luks", "add-key", "--key-file", e.key("p0"), e.img, e.key("p1")) }, func(e *faultEnv) []string {
		return []string{"luks", "remove-key", "--key-file", e.key("p1"), e.img}
	}},
	{"kill-slot", func(e *faultEnv) { e.run("luks", "add-key", "--key-file", e.key("p0"), e.img, e.key("p1")) }, func(e *faultEnv) []string {
		return []string{"luks", "kill-slot", e.img, "0"}
	}},
	{"token import", func(e *faultEnv) {}, func(e *faultEnv) []string {
		return []string{"luks", "token", "import", "--json-file", e.path("token.json"), e.img}
	}},
	{"token remove", func(e *faultEnv) { e.run("luks", "token", "import", "--json-file", e.path("token.json"), e.img) }, func(e *faultEnv) []string {
		return []string{"luks", "token", "remove", "--token-id", "0", e.img}
	}},
	{"header-restore older backup", func(e *faultEnv) {
		e.run("luks", "header-backup", "--header-backup-file", e.path("bak"), e.img)
		e.run("luks", "change-key", "--key-file", e.key("p0"), e.img, e.key("p1"))
	}, func(e *faultEnv) []string {
		return []string{"luks", "header-restore", "--header-backup-file", e.path("bak"), e.img}
	}},
	{"header-restore over the same keyslot area", func(e *faultEnv) {
		// The backup's keyslot 0 and the current keyslot 0 (p2) share an
		// area; the current keyslot 1 (p1) must survive until the switch.
		e.run("luks", "header-backup", "--header-backup-file", e.path("bak"), e.img)
		e.run("luks", "add-key", "--key-file", e.key("p0"), e.img, e.key("p1"))
		e.run("luks", "kill-slot", e.img, "0")
		e.run("luks", "add-key", "--key-file", e.key("p1"), "--key-slot", "0", e.img, e.key("p2"))
	}, func(e *faultEnv) []string {
		return []string{"luks", "header-restore", "--header-backup-file", e.path("bak"), e.img}
	}},
	{"header-restore over a wiped header", func(e *faultEnv) {
		e.run("luks", "header-backup", "--header-backup-file", e.path("bak"), e.img)
		f, _ := os.OpenFile(e.img, os.O_RDWR, 0)
		f.WriteAt(make([]byte, 64<<10), 0)
		f.Close()
	}, func(e *faultEnv) []string {
		return []string{"luks", "header-restore", "-q", "--header-backup-file", e.path("bak"), e.img}
	}},
	{"repair of the primary (token import)", func(e *faultEnv) { e.corrupt(5000) }, func(e *faultEnv) []string {
		return []string{"luks", "token", "import", "--json-file", e.path("token.json"), e.img}
	}},
	{"repair of the secondary (add-key)", func(e *faultEnv) { e.corrupt(16384 + 5000) }, func(e *faultEnv) []string {
		return append(append([]string{"luks", "add-key", "--key-file", e.key("p0")}, fastKDF...), e.img, e.key("p1"))
	}},
}

// volumeState is what a device holds as far as a reboot can tell: the
// shape of the header it reads (sig: keyslots with their areas, digests,
// tokens, UUID; "" when no header reads) and the passphrases that open it.
type volumeState struct {
	sig   string
	opens []string
	rep   *luks2.ReadReport
}

func stateOf(t *testing.T, img []byte) volumeState {
	t.Helper()
	h, rep, err := luks2.Read(bytes.NewReader(img))
	if err != nil {
		return volumeState{}
	}
	shape := map[string]any{"uuid": h.UUID, "tokens": h.Metadata.Tokens}
	slots := map[int]uint64{}
	for id, k := range h.Metadata.Keyslots {
		slots[id] = uint64(k.Area.Offset)
	}
	digests := map[int][]string{}
	for id, d := range h.Metadata.Digests {
		digests[id] = d.Keyslots
	}
	shape["keyslots"], shape["digests"] = slots, digests
	sig, _ := json.Marshal(shape)
	st := volumeState{sig: string(sig), rep: rep}
	for _, p := range []string{"p0", "p1", "p2"} {
		if _, _, err := h.Unlock(bytes.NewReader(img), []byte(p), -1); err == nil {
			st.opens = append(st.opens, p)
		}
	}
	return st
}

// recordingDisk is a faultdev.Disk that keeps a copy of the durable image
// after every Sync: the states a reboot may legitimately find.
type recordingDisk struct {
	*faultdev.Disk
	synced [][]byte
}

func (r *recordingDisk) Sync() error {
	err := r.Disk.Sync()
	r.synced = append(r.synced, r.Disk.Durable())
	return err
}

// useDisk makes the CLI open d in place of the image file img.
func useDisk(t *testing.T, img string, d deviceFile, size int64) {
	old := openDeviceFile
	openDeviceFile = func(path string, flag int) (deviceFile, int64, error) {
		if path == img {
			return d, size, nil
		}
		return old(path, flag)
	}
	t.Cleanup(func() { openDeviceFile = old })
}

// accepted maps each header shape seen at a sync point of a clean run to
// the passphrases that opened at every such point (required) and at some
// (allowed).
type accepted map[string]struct{ required, allowed []string }

func acceptedStates(t *testing.T, snapshots [][]byte) accepted {
	acc := accepted{}
	for _, img := range snapshots {
		st := stateOf(t, img)
		a, seen := acc[st.sig]
		if !seen {
			a.required = st.opens
		}
		a.required = slices.DeleteFunc(slices.Clone(a.required), func(p string) bool { return !slices.Contains(st.opens, p) })
		for _, p := range st.opens {
			if !slices.Contains(a.allowed, p) {
				a.allowed = append(a.allowed, p)
			}
		}
		acc[st.sig] = a
	}
	return acc
}

// check holds a state after a fault against the accepted ones, and proves
// that the next header write repairs it.
func (acc accepted) check(t *testing.T, img []byte, what string) {
	t.Helper()
	st := stateOf(t, img)
	a, ok := acc[st.sig]
	switch {
	case !ok:
		t.Fatalf("%s: the header reads as neither the old nor the new state: %s", what, st.sig)
	case st.sig != "" && len(st.opens) == 0:
		t.Fatalf("%s: no passphrase opens the volume", what)
	}
	for _, p := range a.required {
		if !slices.Contains(st.opens, p) {
			t.Fatalf("%s: %s no longer opens (opens: %v)", what, p, st.opens)
		}
	}
	for _, p := range st.opens {
		if !slices.Contains(a.allowed, p) {
			t.Fatalf("%s: %s opens, which no clean state allows (%v)", what, p, a.allowed)
		}
	}
	if st.sig == "" || !st.rep.NeedsRepair() {
		return
	}
	h, _, _ := luks2.Read(bytes.NewReader(img))
	d := faultdev.New(img)
	if err := h.Write(d); err != nil {
		t.Fatalf("%s: repair: %v", what, err)
	}
	if after := stateOf(t, d.Durable()); after.sig != st.sig || after.rep.NeedsRepair() {
		t.Fatalf("%s: the repair left %s (needs repair: %v)", what, after.sig, after.rep.NeedsRepair())
	}
}

// TestLUKSWritesSurviveFaults runs each write command with a power cut at
// every write and sync it makes (the cache lost, kept, or kept sector by
// sector at random) and with an I/O error at every write; after each, the
// device must read as the old state, the new one or a state between that a
// clean run also syncs, with the passphrases of that state opening it.
func TestLUKSWritesSurviveFaults(t *testing.T) {
	total := 0
	for _, op := range faultOps {
		t.Run(op.name, func(t *testing.T) {
			e := newFaultEnv(t)
			op.setup(e)
			image, err := os.ReadFile(e.img)
			if err != nil {
				t.Fatal(err)
			}
			rec := &recordingDisk{Disk: faultdev.New(image), synced: [][]byte{image}}
			useDisk(t, e.img, rec, int64(len(image)))
			if _, errOut, err := runIn(t, "", op.args(e)...); err != nil {
				t.Fatalf("clean run: %v\n%s", err, errOut)
			}
			events, writes := rec.Events(), rec.Writes()
			acc := acceptedStates(t, append(rec.synced, rec.Durable()))
			if before, after := stateOf(t, image), stateOf(t, rec.Durable()); before.sig == after.sig || len(after.opens) == 0 {
				t.Fatalf("the clean run changed nothing, or left nothing that opens: %v -> %v", before, after)
			}
			runs := 0
			try := func(what string, plan func(*faultdev.Disk), result func(*faultdev.Disk) []byte, mustFail bool) {
				d := faultdev.New(image)
				plan(d)
				useDisk(t, e.img, d, int64(len(image)))
				_, _, err := runIn(t, "", op.args(e)...)
				if mustFail && err == nil {
					t.Fatalf("%s: the command succeeded", what)
				}
				acc.check(t, result(d), what)
				runs++
			}
			for n := range events {
				for _, m := range []faultdev.Mode{faultdev.Cache, faultdev.WriteThrough} {
					try(fmt.Sprintf("cut at event %d/%d (%v)", n, events, m), func(d *faultdev.Disk) { d.CutAt(n, m, 0) }, (*faultdev.Disk).Durable, false)
				}
				for seed := range uint64(3) {
					try(fmt.Sprintf("cut at event %d/%d (torn, seed %d)", n, events, seed), func(d *faultdev.Disk) { d.CutAt(n, faultdev.Torn, seed) }, (*faultdev.Disk).Durable, false)
				}
			}
			for n := range writes {
				try(fmt.Sprintf("EIO at write %d/%d", n, writes), func(d *faultdev.Disk) { d.FailWriteAt(n) }, (*faultdev.Disk).Flushed, true)
			}
			t.Logf("%d writes, %d events: %d faults injected, every state old, new or a synced one between", writes, events, runs)
			total += runs
		})
	}
	t.Logf("%d operations, %d faults injected", len(faultOps), total)
}
