package dm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Layout of struct dm_ioctl and friends, from include/uapi/linux/dm-ioctl.h.
// The linux tests check these against unsafe.Sizeof/Offsetof of
// unix.DmIoctl and unix.DmTargetSpec.
const (
	headerSize     = 312 // sizeof(struct dm_ioctl)
	offVersion     = 0   // __u32 version[3]
	offDataSize    = 12  // __u32 data_size
	offDataStart   = 16  // __u32 data_start
	offTargetCount = 20  // __u32 target_count
	offOpenCount   = 24  // __s32 open_count
	offFlags       = 28  // __u32 flags
	offEventNr     = 32  // __u32 event_nr
	offDev         = 40  // __u64 dev (after __u32 padding at 36)
	offName        = 48  // char name[DM_NAME_LEN]
	offUUID        = 176 // char uuid[DM_UUID_LEN]
	nameLen        = 128 // DM_NAME_LEN
	uuidLen        = 129 // DM_UUID_LEN

	specSize      = 40 // sizeof(struct dm_target_spec)
	specOffStart  = 0  // __u64 sector_start
	specOffLength = 8  // __u64 length
	specOffStatus = 16 // __s32 status
	specOffNext   = 20 // __u32 next
	specOffType   = 24 // char target_type[DM_MAX_TYPE_NAME]
	typeNameLen   = 16 // DM_MAX_TYPE_NAME

	nameListOffName = 12 // struct dm_name_list: __u64 dev; __u32 next; char name[]

	msgOffMessage = 8 // struct dm_target_msg: __u64 sector; char message[]

	// alignment of every record after the header ("Be careful to add
	// padding after string to ensure correct alignment of subsequent
	// dm_target_spec", dm-ioctl.h; align_ptr in drivers/md/dm-ioctl.c).
	recordAlign = 8
)

// Flags of struct dm_ioctl (include/uapi/linux/dm-ioctl.h).
const (
	flagReadOnly       = 1 << 0  // DM_READONLY_FLAG
	flagSuspend        = 1 << 1  // DM_SUSPEND_FLAG
	flagStatusTable    = 1 << 4  // DM_STATUS_TABLE_FLAG
	flagActivePresent  = 1 << 5  // DM_ACTIVE_PRESENT_FLAG
	flagInactivePres   = 1 << 6  // DM_INACTIVE_PRESENT_FLAG
	flagBufferFull     = 1 << 8  // DM_BUFFER_FULL_FLAG
	flagSkipLockFS     = 1 << 10 // DM_SKIP_LOCKFS_FLAG
	flagNoFlush        = 1 << 11 // DM_NOFLUSH_FLAG
	flagUUID           = 1 << 14 // DM_UUID_FLAG
	flagSecureData     = 1 << 15 // DM_SECURE_DATA_FLAG
	flagDataOut        = 1 << 16 // DM_DATA_OUT_FLAG
	flagDeferredRemove = 1 << 17 // DM_DEFERRED_REMOVE

	nameListHasUUID = 1 // DM_NAME_LIST_FLAG_HAS_UUID
)

// The interface version we send. The kernel refuses a request whose major
// differs or whose minor is newer than its own (check_ioctl_version in
// drivers/md/dm-ioctl.c); 4.0.0 is accepted by every v4 kernel, and the
// reply carries the kernel's version.
const (
	ioctlVersionMajor = 4
	ioctlVersionMinor = 0
)

// header is struct dm_ioctl in Go form.
type header struct {
	Version     [3]uint32
	DataSize    uint32
	DataStart   uint32
	TargetCount uint32
	OpenCount   int32
	Flags       uint32
	EventNr     uint32
	Dev         uint64
	Name        string
	UUID        string
}

func alignUp(n int) int { return (n + recordAlign - 1) &^ (recordAlign - 1) }

// checkName validates a device name as dm-ioctl's check_name and
// DM_NAME_LEN do: 1..127 bytes, no '/', not "." or "..".
func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("device name is empty")
	case len(name) >= nameLen:
		return fmt.Errorf("device name %q is longer than %d bytes", name, nameLen-1)
	case bytes.ContainsAny([]byte(name), "/\x00"):
		return fmt.Errorf("device name %q contains '/' or NUL", name)
	case name == "." || name == "..":
		return fmt.Errorf("device name %q is not allowed", name)
	}
	return nil
}

// checkUUID validates a device-mapper UUID: at most 128 bytes, no NUL.
func checkUUID(uuid string) error {
	if len(uuid) >= uuidLen {
		return fmt.Errorf("device uuid %q is longer than %d bytes", uuid, uuidLen-1)
	}
	if bytes.IndexByte([]byte(uuid), 0) >= 0 {
		return fmt.Errorf("device uuid %q contains NUL", uuid)
	}
	return nil
}

// putHeader writes h into b[:headerSize]. Name and UUID must already be
// validated; they are NUL-padded.
func putHeader(b []byte, o binary.ByteOrder, h header) {
	for i, v := range h.Version {
		o.PutUint32(b[offVersion+4*i:], v)
	}
	o.PutUint32(b[offDataSize:], h.DataSize)
	o.PutUint32(b[offDataStart:], h.DataStart)
	o.PutUint32(b[offTargetCount:], h.TargetCount)
	o.PutUint32(b[offOpenCount:], uint32(h.OpenCount))
	o.PutUint32(b[offFlags:], h.Flags)
	o.PutUint32(b[offEventNr:], h.EventNr)
	o.PutUint32(b[offEventNr+4:], 0)
	o.PutUint64(b[offDev:], h.Dev)
	clear(b[offName:headerSize])
	copy(b[offName:offName+nameLen-1], h.Name)
	copy(b[offUUID:offUUID+uuidLen-1], h.UUID)
}

// cString returns b up to its first NUL, or all of b.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// parseHeader reads struct dm_ioctl from the start of b.
func parseHeader(b []byte, o binary.ByteOrder) (header, error) {
	if len(b) < headerSize {
		return header{}, fmt.Errorf("dm: ioctl reply of %d bytes is shorter than struct dm_ioctl (%d)", len(b), headerSize)
	}
	var h header
	for i := range h.Version {
		h.Version[i] = o.Uint32(b[offVersion+4*i:])
	}
	h.DataSize = o.Uint32(b[offDataSize:])
	h.DataStart = o.Uint32(b[offDataStart:])
	h.TargetCount = o.Uint32(b[offTargetCount:])
	h.OpenCount = int32(o.Uint32(b[offOpenCount:]))
	h.Flags = o.Uint32(b[offFlags:])
	h.EventNr = o.Uint32(b[offEventNr:])
	h.Dev = o.Uint64(b[offDev:])
	h.Name = cString(b[offName : offName+nameLen])
	h.UUID = cString(b[offUUID : offUUID+uuidLen])
	return h, nil
}

// newRequest returns a zeroed buffer of headerSize+payload bytes with the
// header filled in: DataStart = headerSize, DataSize = the whole buffer.
func newRequest(o binary.ByteOrder, h header, payload int) []byte {
	b := make([]byte, headerSize+payload)
	h.Version = [3]uint32{ioctlVersionMajor, ioctlVersionMinor, 0}
	h.DataStart = headerSize
	h.DataSize = uint32(len(b))
	putHeader(b, o, h)
	return b
}

// marshalTable builds a DM_TABLE_LOAD buffer: the header, then per target a
// struct dm_target_spec, its NUL-terminated params and zero padding to 8
// bytes. Each spec's next is the distance from that spec to the following
// one, as populate_table/next_target in drivers/md/dm-ioctl.c expect for
// loads.
func marshalTable(o binary.ByteOrder, h header, ts []Target) ([]byte, error) {
	if err := ValidateTable(ts); err != nil {
		return nil, err
	}
	size := 0
	for _, t := range ts {
		size += alignUp(specSize + len(t.Params) + 1)
	}
	if headerSize+size > 1<<31 {
		return nil, fmt.Errorf("dm: table of %d bytes is too large", size)
	}
	h.TargetCount = uint32(len(ts))
	b := newRequest(o, h, size)
	off := headerSize
	for _, t := range ts {
		rec := alignUp(specSize + len(t.Params) + 1)
		s := b[off : off+rec]
		o.PutUint64(s[specOffStart:], t.Start)
		o.PutUint64(s[specOffLength:], t.Length)
		o.PutUint32(s[specOffStatus:], 0)
		o.PutUint32(s[specOffNext:], uint32(rec))
		copy(s[specOffType:specOffType+typeNameLen-1], t.Type)
		copy(s[specSize:], t.Params)
		off += rec
	}
	return b, nil
}

// marshalMessage builds a DM_TARGET_MSG buffer: the header, then struct
// dm_target_msg (sector, then the NUL-terminated message).
func marshalMessage(o binary.ByteOrder, h header, sector uint64, msg string) ([]byte, error) {
	if msg == "" {
		return nil, errors.New("dm: empty target message")
	}
	if bytes.IndexByte([]byte(msg), 0) >= 0 {
		return nil, errors.New("dm: target message contains NUL")
	}
	b := newRequest(o, h, alignUp(msgOffMessage+len(msg)+1))
	o.PutUint64(b[headerSize:], sector)
	copy(b[headerSize+msgOffMessage:], msg)
	return b, nil
}

// replyData checks the header of a kernel reply and returns the header and
// the data area b[data_start:data_size]. It refuses a reply flagged
// DM_BUFFER_FULL_FLAG, whose data is truncated.
func replyData(b []byte, o binary.ByteOrder) (header, []byte, error) {
	h, err := parseHeader(b, o)
	if err != nil {
		return h, nil, err
	}
	if h.Flags&flagBufferFull != 0 {
		return h, nil, errors.New("dm: ioctl reply is truncated (DM_BUFFER_FULL_FLAG)")
	}
	if h.DataStart < headerSize || h.DataSize < h.DataStart || uint64(h.DataSize) > uint64(len(b)) {
		return h, nil, fmt.Errorf("dm: ioctl reply has data_start %d and data_size %d outside its %d-byte buffer", h.DataStart, h.DataSize, len(b))
	}
	return h, b[h.DataStart:h.DataSize], nil
}

// parseTargets reads the targets of a DM_TABLE_STATUS reply. In replies the
// kernel's retrieve_status sets each spec's next to the offset of the
// following spec from the start of the first one (the data area), padded
// to 8 bytes. Params holds the status or table string. It never panics
// and never loops: each record must lie inside the data area and next must
// move strictly forward past the current record.
func parseTargets(b []byte, o binary.ByteOrder) ([]Target, error) {
	h, data, err := replyData(b, o)
	if err != nil {
		return nil, err
	}
	var ts []Target
	off := 0
	for i := uint32(0); i < h.TargetCount; i++ {
		if off > len(data) || len(data)-off < specSize {
			return nil, fmt.Errorf("dm: target %d of %d: spec at offset %d runs past the %d-byte data area", i, h.TargetCount, off, len(data))
		}
		s := data[off:]
		params := s[specSize:]
		end := bytes.IndexByte(params, 0)
		if end < 0 {
			return nil, fmt.Errorf("dm: target %d of %d: parameter string is not NUL-terminated", i, h.TargetCount)
		}
		ts = append(ts, Target{
			Start:  o.Uint64(s[specOffStart:]),
			Length: o.Uint64(s[specOffLength:]),
			Type:   cString(s[specOffType : specOffType+typeNameLen]),
			Params: string(params[:end]),
		})
		if i+1 == h.TargetCount {
			break
		}
		next := int(o.Uint32(s[specOffNext:]))
		if next < off+specSize+end+1 {
			return nil, fmt.Errorf("dm: target %d of %d: next offset %d does not move past the record at %d", i, h.TargetCount, next, off)
		}
		off = next
	}
	return ts, nil
}

// Device is one entry of [Client.List].
type Device struct {
	// Name is the device-mapper name.
	Name string
	// UUID is the device-mapper UUID, when the kernel reports it
	// (DM_NAME_LIST_FLAG_HAS_UUID, kernel 5.13+).
	UUID string
	// Major and Minor are the block device number.
	Major, Minor uint32
}

// decodeDev splits the kernel's huge_encode_dev value into major and minor
// (new_encode_dev in include/linux/kdev_t.h).
func decodeDev(dev uint64) (major, minor uint32) {
	major = uint32((dev & 0xfff00) >> 8)
	minor = uint32((dev & 0xff) | ((dev >> 12) & 0xfff00))
	return major, minor
}

// encodeDev is the inverse of decodeDev.
func encodeDev(major, minor uint32) uint64 {
	return uint64(minor&0xff) | uint64(major&0xfff)<<8 | uint64(minor&^0xff)<<12
}

// parseNameList reads a DM_LIST_DEVICES reply: struct dm_name_list records
// (dev, next relative to this record, name), each followed, 8-aligned, by
// event_nr and flags and, with DM_NAME_LIST_FLAG_HAS_UUID, the UUID
// (list_devices in drivers/md/dm-ioctl.c). withFlags says whether the
// kernel writes the flags word (interface 4.45+). A first record with dev 0
// means no devices.
func parseNameList(b []byte, o binary.ByteOrder, withFlags bool) ([]Device, error) {
	_, data, err := replyData(b, o)
	if err != nil {
		return nil, err
	}
	var ds []Device
	off := 0
	for {
		if off == 0 && (len(data) == 0 || len(data) >= 8 && o.Uint64(data) == 0) {
			// No devices: the kernel sets data_size to data_start (and
			// writes dev 0 just past it, or inside a larger area).
			return nil, nil
		}
		if off > len(data) || len(data)-off < nameListOffName {
			return nil, fmt.Errorf("dm: device list record at offset %d runs past the %d-byte data area", off, len(data))
		}
		rec := data[off:]
		dev := o.Uint64(rec)
		next := int(o.Uint32(rec[8:]))
		limit := len(rec)
		if next != 0 {
			if next < nameListOffName+1 || next > len(rec) {
				return nil, fmt.Errorf("dm: device list record at offset %d has bad next %d", off, next)
			}
			limit = next
		}
		nameArea := rec[nameListOffName:limit]
		n := bytes.IndexByte(nameArea, 0)
		if n < 0 {
			return nil, fmt.Errorf("dm: device list record at offset %d: name is not NUL-terminated", off)
		}
		d := Device{Name: string(nameArea[:n])}
		d.Major, d.Minor = decodeDev(dev)
		if withFlags {
			p := alignUp(nameListOffName + n + 1) // event_nr, then flags
			if p+8 <= limit && o.Uint32(rec[p+4:])&nameListHasUUID != 0 {
				u := rec[p+8 : limit]
				if k := bytes.IndexByte(u, 0); k >= 0 {
					d.UUID = string(u[:k])
				}
			}
		}
		ds = append(ds, d)
		if next == 0 {
			return ds, nil
		}
		off += next
	}
}

// parseMessageReply returns the text a target wrote in reply to a message
// (DM_DATA_OUT_FLAG set: a NUL-terminated string in the data area). Without
// that flag there is no reply and the data fields mean nothing: Linux 6.12
// answers dm-clone's "enable_hydration" with data_size below data_start.
func parseMessageReply(b []byte, o binary.ByteOrder) (string, error) {
	h, err := parseHeader(b, o)
	if err != nil {
		return "", err
	}
	if h.Flags&flagDataOut == 0 {
		return "", nil
	}
	_, data, err := replyData(b, o)
	if err != nil {
		return "", err
	}
	return cString(data), nil
}
