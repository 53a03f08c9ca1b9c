//go:build linux

package dm

import (
	"encoding/binary"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// TestStructLayout checks our offsets against x/sys's generated
// unix.DmIoctl and unix.DmTargetSpec, which mirror
// include/uapi/linux/dm-ioctl.h (struct dm_ioctl is 312 bytes).
func TestStructLayout(t *testing.T) {
	var h unix.DmIoctl
	var s unix.DmTargetSpec
	got := map[string]uintptr{
		"sizeof dm_ioctl":       unsafe.Sizeof(h),
		"version":               unsafe.Offsetof(h.Version),
		"data_size":             unsafe.Offsetof(h.Data_size),
		"data_start":            unsafe.Offsetof(h.Data_start),
		"target_count":          unsafe.Offsetof(h.Target_count),
		"open_count":            unsafe.Offsetof(h.Open_count),
		"flags":                 unsafe.Offsetof(h.Flags),
		"event_nr":              unsafe.Offsetof(h.Event_nr),
		"dev":                   unsafe.Offsetof(h.Dev),
		"name":                  unsafe.Offsetof(h.Name),
		"uuid":                  unsafe.Offsetof(h.Uuid),
		"len name":              uintptr(len(h.Name)),
		"len uuid":              uintptr(len(h.Uuid)),
		"sizeof dm_target_spec": unsafe.Sizeof(s),
		"sector_start":          unsafe.Offsetof(s.Sector_start),
		"length":                unsafe.Offsetof(s.Length),
		"status":                unsafe.Offsetof(s.Status),
		"next":                  unsafe.Offsetof(s.Next),
		"target_type":           unsafe.Offsetof(s.Target_type),
		"len target_type":       uintptr(len(s.Target_type)),
	}
	want := map[string]uintptr{
		"sizeof dm_ioctl": 312, "version": offVersion, "data_size": offDataSize,
		"data_start": offDataStart, "target_count": offTargetCount, "open_count": offOpenCount,
		"flags": offFlags, "event_nr": offEventNr, "dev": offDev, "name": offName, "uuid": offUUID,
		"len name": nameLen, "len uuid": uuidLen,
		"sizeof dm_target_spec": specSize, "sector_start": specOffStart, "length": specOffLength,
		"status": specOffStatus, "next": specOffNext, "target_type": specOffType, "len target_type": typeNameLen,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("layout (-ours +x/sys):\n%s", diff)
	}
	if headerSize != 312 {
		t.Errorf("headerSize = %d, want 312", headerSize)
	}
}

// TestHeaderMatchesStruct encodes a header with our code and compares it
// with the memory image of the same unix.DmIoctl.
func TestHeaderMatchesStruct(t *testing.T) {
	h := header{
		Version: [3]uint32{4, 48, 1}, DataSize: 400, DataStart: 312, TargetCount: 3,
		OpenCount: -2, Flags: flagSuspend | flagUUID, EventNr: 9, Dev: 0x10fd2c,
		Name: "state", UUID: "CRYPT-LUKS2-0123-state",
	}
	var s unix.DmIoctl
	s.Version = h.Version
	s.Data_size, s.Data_start, s.Target_count = h.DataSize, h.DataStart, h.TargetCount
	s.Open_count, s.Flags, s.Event_nr, s.Dev = h.OpenCount, h.Flags, h.EventNr, h.Dev
	copy(s.Name[:], h.Name)
	copy(s.Uuid[:], h.UUID)
	mem := unsafe.Slice((*byte)(unsafe.Pointer(&s)), unsafe.Sizeof(s))

	b := make([]byte, headerSize)
	putHeader(b, binary.NativeEndian, h)
	if diff := cmp.Diff(mem, b); diff != "" {
		t.Errorf("encoded header differs from unix.DmIoctl (-struct +ours):\n%s", diff)
	}
	back, err := parseHeader(mem, binary.NativeEndian)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(h, back); diff != "" {
		t.Errorf("parseHeader (-want +got):\n%s", diff)
	}
}

// TestFlagsMatchUAPI checks our flag constants against x/sys's.
func TestFlagsMatchUAPI(t *testing.T) {
	got := []uint32{flagReadOnly, flagSuspend, flagStatusTable, flagActivePresent, flagInactivePres,
		flagBufferFull, flagSkipLockFS, flagNoFlush, flagUUID, flagSecureData, flagDataOut, flagDeferredRemove, nameListHasUUID}
	want := []uint32{unix.DM_READONLY_FLAG, unix.DM_SUSPEND_FLAG, unix.DM_STATUS_TABLE_FLAG, unix.DM_ACTIVE_PRESENT_FLAG,
		unix.DM_INACTIVE_PRESENT_FLAG, unix.DM_BUFFER_FULL_FLAG, unix.DM_SKIP_LOCKFS_FLAG, unix.DM_NOFLUSH_FLAG,
		unix.DM_UUID_FLAG, unix.DM_SECURE_DATA_FLAG, unix.DM_DATA_OUT_FLAG, unix.DM_DEFERRED_REMOVE, unix.DM_NAME_LIST_FLAG_HAS_UUID}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("flags (-x/sys +ours):\n%s", diff)
	}
	if nameLen != unix.DM_NAME_LEN || uuidLen != unix.DM_UUID_LEN || typeNameLen != unix.DM_MAX_TYPE_NAME {
		t.Error("length constants differ from x/sys")
	}
}

// TestDevEncodingMatchesUnix checks decodeDev against unix.Major/Minor for
// numbers the kernel's 32-bit new_encode_dev can hold.
func TestDevEncodingMatchesUnix(t *testing.T) {
	for _, mm := range [][2]uint32{{253, 0}, {253, 300}, {7, 1}, {259, 1048575}, {4095, 255}} {
		dev := encodeDev(mm[0], mm[1])
		if unix.Major(dev) != mm[0] || unix.Minor(dev) != mm[1] {
			t.Errorf("encodeDev(%d, %d) = %#x decodes to %d:%d with x/sys", mm[0], mm[1], dev, unix.Major(dev), unix.Minor(dev))
		}
		if unix.Mkdev(mm[0], mm[1]) != dev {
			t.Errorf("unix.Mkdev(%d, %d) = %#x, encodeDev = %#x", mm[0], mm[1], unix.Mkdev(mm[0], mm[1]), dev)
		}
	}
}
