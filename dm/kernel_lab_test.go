//go:build labkernel

// These tests need a kernel with device-mapper and root. They are compiled
// only with -tags labkernel, by the e2e scenario dm-client, which runs them
// inside the QEMU lab; the host of the development machines has no
// device-mapper, so they are never compiled (and so never skipped) there.

package dm

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// labDisk is a scratch disk the scenario gives the guest (16 MiB, /dev/vda).
const labDisk = "/dev/vda"

func client(t *testing.T) *Client {
	t.Helper()
	c, err := Open(DefaultControl)
	if err != nil {
		t.Fatalf("open control: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestKernelVersionAndList(t *testing.T) {
	c := client(t)
	v, err := c.Version()
	if err != nil {
		t.Fatal(err)
	}
	if v[0] != 4 {
		t.Fatalf("dm ioctl version %v, want major 4", v)
	}
	if _, err := c.List(); err != nil {
		t.Fatal(err)
	}
}

func TestKernelLinearLifecycle(t *testing.T) {
	c := client(t)
	const name = "lab-linear"
	// Two linear targets over two halves, swapped: a multi-target table.
	targets := []Target{
		{Start: 0, Length: 8, Type: "linear", Params: labDisk + " 8"},
		{Start: 8, Length: 8, Type: "linear", Params: labDisk + " 0"},
	}
	path, err := c.CreateAndLoad(name, "CONFIDISK-LAB-linear", targets, false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Remove(name)
	info, err := c.Info(name)
	if err != nil || !info.Exists || !info.LiveTable || info.Suspended || info.TargetCount != 2 || info.UUID != "CONFIDISK-LAB-linear" {
		t.Fatalf("info %+v, %v", info, err)
	}
	got, err := c.Table(name)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(labDisk, &st); err != nil {
		t.Fatal(err)
	}
	dev := fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	want := []Target{
		{Start: 0, Length: 8, Type: "linear", Params: dev + " 8"},
		{Start: 8, Length: 8, Type: "linear", Params: dev + " 0"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("table (-want +got):\n%s", diff)
	}
	// Write through the mapping, read the swapped halves from the disk.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_SYNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	buf := bytes.Repeat([]byte("A"), 4096)
	buf = append(buf, bytes.Repeat([]byte("B"), 4096)...)
	if _, err := f.WriteAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	d, _ := os.Open(labDisk)
	raw := make([]byte, 8192)
	d.ReadAt(raw, 0)
	d.Close()
	if raw[0] != 'B' || raw[4096] != 'A' {
		t.Errorf("disk holds %q/%q at 0/4096, want B/A", raw[0], raw[4096])
	}
	st2, err := c.Status(name)
	if err != nil || len(st2) != 2 {
		t.Fatalf("status %v %v", st2, err)
	}
	if err := c.Suspend(name); err != nil {
		t.Fatal(err)
	}
	if info, _ := c.Info(name); !info.Suspended {
		t.Error("not suspended after Suspend")
	}
	if err := c.Resume(name); err != nil {
		t.Fatal(err)
	}
	// Busy: an opener makes plain removal fail with EBUSY after retries.
	holder, _ := os.Open(path)
	err = c.RemoveWith(name, RemoveOptions{Retries: 2})
	if !errors.Is(err, unix.EBUSY) {
		t.Errorf("remove while open: %v, want EBUSY", err)
	}
	// Deferred removal happens once the holder closes.
	if err := c.RemoveWith(name, RemoveOptions{Deferred: true}); err != nil {
		t.Fatalf("deferred remove: %v", err)
	}
	holder.Close()
	// The kernel removes it from a work queue after the last close.
	for i := 0; ; i++ {
		info, _ := c.Info(name)
		if !info.Exists {
			break
		}
		if i == 50 {
			t.Fatal("device still exists 5 s after deferred removal and close")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestKernelMessageAndErrors(t *testing.T) {
	c := client(t)
	const name = "lab-error"
	if _, err := c.CreateAndLoad(name, "", []Target{{Start: 0, Length: 8, Type: "no-such-target"}}, true); err == nil {
		t.Fatal("unknown target type accepted")
	}
	if info, _ := c.Info(name); info.Exists {
		t.Fatal("failed CreateAndLoad left the device behind")
	}
	if _, err := os.Stat("/dev/mapper/" + name); err == nil {
		t.Fatal("failed CreateAndLoad left the node behind")
	}
	if _, err := c.CreateAndLoad(name, "", []Target{{Start: 0, Length: 8, Type: "error"}}, true); err != nil {
		t.Fatal(err)
	}
	defer c.Remove(name)
	// The error target accepts no messages: the kernel's error comes back.
	if _, err := c.Message(name, 0, "hello"); err == nil {
		t.Error("message to an error target accepted")
	}
	// Many devices: the list reply needs more than the first buffer.
	var names []string
	for i := range 40 {
		n := fmt.Sprintf("lab-many-%02d-%s", i, strings.Repeat("x", 60))
		if _, err := c.CreateAndLoad(n, "", []Target{{Start: 0, Length: 8, Type: "error"}}, true); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	list, err := c.List()
	for _, n := range names {
		c.Remove(n)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(list) < 41 {
		t.Errorf("list has %d devices, want at least 41", len(list))
	}
}
