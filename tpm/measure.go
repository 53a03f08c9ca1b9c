package tpm

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/google/go-tpm/tpm2/transport"
	"golang.org/x/sys/unix"
)

// VolumeKeyPCR is the PCR systemd-cryptsetup measures volume keys into
// (tpm2-measure-pcr=yes; docs/TPM2_PCR_MEASUREMENTS.md "system-identity").
const VolumeKeyPCR = 15

// DefaultMeasureLog is systemd's userspace measurement log
// (tpm2-util.c tpm2_userspace_log_open).
const DefaultMeasureLog = "/run/log/systemd/tpm2-measure.log"

// VolumeKeyMessage is the string systemd-cryptsetup HMACs with the volume
// key (cryptsetup.c measure_volume_key): "cryptsetup:" + the volume name
// with ':' (and control characters and '\') escaped as \xNN + ":" + the
// LUKS UUID. An empty name becomes "luks-" + UUID.
func VolumeKeyMessage(name, uuid string) string {
	if name == "" {
		name = "luks-" + uuid
	}
	return "cryptsetup:" + xescape(name, ":") + ":" + uuid
}

// xescape escapes as systemd's xescape_full: bytes below 0x20, from 0x7f
// up, the backslash and every byte of bad as \xNN.
func xescape(s, bad string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < ' ' || c >= 127 || c == '\\' || strings.IndexByte(bad, c) >= 0 {
			fmt.Fprintf(&b, `\x%02x`, c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// VolumeKeyDigest is what systemd extends into each bank for a volume key:
// HMAC_bank(key = volume key, message = [VolumeKeyMessage]). The volume key
// itself never reaches the TPM (cryptsetup.c measure_volume_key).
func VolumeKeyDigest(bank Bank, vk []byte, name, uuid string) ([]byte, error) {
	h, err := bank.Hash()
	if err != nil {
		return nil, err
	}
	m := hmac.New(h.New, vk)
	m.Write([]byte(VolumeKeyMessage(name, uuid)))
	return m.Sum(nil), nil
}

// FixateValue is the value of systemd's crypttab option
// fixate-volume-key= for a volume: the lowercase hex of
// HMAC-SHA256(volume key, [VolumeKeyMessage]), equal to the sha256-bank
// digest extended into PCR 15.
func FixateValue(vk []byte, name, uuid string) string {
	m := hmac.New(sha256.New, vk)
	m.Write([]byte(VolumeKeyMessage(name, uuid)))
	return hex.EncodeToString(m.Sum(nil))
}

// LogDigest is one bank's digest in a measurement log record.
type LogDigest struct {
	HashAlg string `json:"hashAlg"`
	Digest  string `json:"digest"`
}

// LogContent is the "content" object of a systemd record.
type LogContent struct {
	String    string `json:"string"`
	BootID    string `json:"bootId,omitempty"`
	Timestamp uint64 `json:"timestamp,omitempty"`
	EventType string `json:"eventType,omitempty"`
}

// LogRecord is one record of systemd's tpm2-measure.log: a CEL-JSON-like
// object in an RFC 7464 JSON text sequence (tpm2-util.c tpm2_userspace_log).
type LogRecord struct {
	PCR         int         `json:"pcr"`
	Digests     []LogDigest `json:"digests"`
	ContentType string      `json:"content_type"`
	Content     LogContent  `json:"content"`
}

// MeasureOptions tune [MeasureVolumeKey].
type MeasureOptions struct {
	// PCR defaults to [VolumeKeyPCR].
	PCR int
	// Banks to extend; nil means every active bank ([ActiveBanks]), as
	// systemd's default.
	Banks []Bank
	// LogPath is the measurement log to append to; "" means
	// [DefaultMeasureLog]; "-" writes no log.
	LogPath string
	// BootID is the record's bootId (32 lowercase hex digits); "" reads
	// /proc/sys/kernel/random/boot_id.
	BootID string
	// Timestamp is the record's CLOCK_BOOTTIME in microseconds; 0 reads the clock.
	Timestamp uint64
}

// MeasureVolumeKey does what systemd-cryptsetup does after activating a
// volume with tpm2-measure-pcr=yes (cryptsetup.c measure_volume_key): for
// each bank it extends [VolumeKeyDigest] into the PCR, and it appends a
// "volume-key" record to the measurement log, opened and locked before the
// extend. It returns the record written.
func MeasureVolumeKey(t transport.TPM, vk []byte, name, uuid string, o MeasureOptions) (*LogRecord, error) {
	if len(vk) == 0 {
		return nil, errors.New("measure volume key: empty volume key")
	}
	pcr := o.PCR
	if pcr == 0 {
		pcr = VolumeKeyPCR
	}
	bks := o.Banks
	if bks == nil {
		var err error
		if bks, err = ActiveBanks(t); err != nil {
			return nil, fmt.Errorf("measure volume key: %w", err)
		}
	}
	if len(bks) == 0 {
		return nil, errors.New("measure volume key: no pcr bank to extend")
	}
	rec := &LogRecord{PCR: pcr, ContentType: "systemd",
		Content: LogContent{String: VolumeKeyMessage(name, uuid), BootID: o.BootID, Timestamp: o.Timestamp, EventType: "volume-key"}}
	digests := make(map[Bank][]byte, len(bks))
	for _, b := range bks {
		d, err := VolumeKeyDigest(b, vk, name, uuid)
		if err != nil {
			return nil, fmt.Errorf("measure volume key: %w", err)
		}
		digests[b] = d
		rec.Digests = append(rec.Digests, LogDigest{HashAlg: string(b), Digest: hex.EncodeToString(d)})
	}
	if rec.Content.BootID == "" {
		b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
		if err != nil {
			return nil, fmt.Errorf("measure volume key: read boot id: %w", err)
		}
		rec.Content.BootID = strings.ReplaceAll(strings.TrimSpace(string(b)), "-", "")
	}
	if rec.Content.Timestamp == 0 {
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
			return nil, fmt.Errorf("measure volume key: read clock: %w", err)
		}
		rec.Content.Timestamp = uint64(ts.Nano() / 1000)
	}
	path := o.LogPath
	if path == "" {
		path = DefaultMeasureLog
	}
	var log *measureLog
	if path != "-" {
		var err error
		if log, err = openMeasureLog(path); err != nil {
			return nil, fmt.Errorf("measure volume key: %w", err)
		}
		defer log.close()
	}
	if err := ExtendPCR(t, pcr, digests); err != nil {
		return nil, fmt.Errorf("measure volume key: %w", err)
	}
	if log != nil {
		if err := log.append(rec); err != nil {
			return rec, fmt.Errorf("measure volume key: pcr %d extended, but the log record was not written: %w", pcr, err)
		}
	}
	return rec, nil
}

// measureLog is the locked measurement log (tpm2-util.c
// tpm2_userspace_log_open: mode 0600, flock(LOCK_EX), and the sticky bit
// set while a record is being appended so a crash leaves a mark).
type measureLog struct{ f *os.File }

func openMeasureLog(path string) (*measureLog, error) {
	if i := strings.LastIndexByte(path, '/'); i > 0 {
		if err := os.MkdirAll(path[:i], 0o755); err != nil {
			return nil, fmt.Errorf("create measurement log directory: %w", err)
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open measurement log: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock measurement log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat measurement log: %w", err)
	}
	if fi.Mode()&os.ModeSticky != 0 {
		f.Close()
		return nil, fmt.Errorf("measurement log %s has the sticky bit set: an earlier write was interrupted, so the log is incomplete", path)
	}
	return &measureLog{f: f}, nil
}

func (l *measureLog) append(r *LogRecord) error {
	j, err := json.Marshal(r)
	if err != nil {
		return err
	}
	rec := append(append([]byte{0x1e}, j...), '\n')
	if err := l.f.Chmod(0o600 | os.ModeSticky); err != nil {
		return fmt.Errorf("mark measurement log busy: %w", err)
	}
	if _, err := l.f.Write(rec); err != nil {
		return fmt.Errorf("append to measurement log: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("sync measurement log: %w", err)
	}
	if err := l.f.Chmod(0o600); err != nil {
		return fmt.Errorf("unmark measurement log: %w", err)
	}
	return nil
}

func (l *measureLog) close() { l.f.Close() }

// ParseMeasureLog parses a tpm2-measure.log: RFC 7464 records, each 0x1E,
// a JSON object, and a newline. It checks every record's PCR index, its
// digests (a known bank, lowercase hex of the bank's size) and content type.
func ParseMeasureLog(b []byte) ([]LogRecord, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if b[0] != 0x1e {
		return nil, errors.New("measurement log does not start with a record separator (0x1e)")
	}
	var out []LogRecord
	for i, chunk := range bytes.Split(b[1:], []byte{0x1e}) {
		if len(chunk) == 0 || chunk[len(chunk)-1] != '\n' {
			return nil, fmt.Errorf("measurement log record %d is truncated (no final newline)", i)
		}
		var r LogRecord
		dec := json.NewDecoder(bytes.NewReader(chunk))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			return nil, fmt.Errorf("measurement log record %d: %w", i, err)
		}
		if dec.More() {
			return nil, fmt.Errorf("measurement log record %d: data after the json object", i)
		}
		if r.PCR < 0 || r.PCR > MaxPCR {
			return nil, fmt.Errorf("measurement log record %d: pcr %d out of range", i, r.PCR)
		}
		if len(r.Digests) == 0 {
			return nil, fmt.Errorf("measurement log record %d: no digests", i)
		}
		for _, d := range r.Digests {
			bank, err := ParseBank(d.HashAlg)
			if err != nil {
				return nil, fmt.Errorf("measurement log record %d: %w", i, err)
			}
			h, _ := bank.Hash()
			raw, err := hex.DecodeString(d.Digest)
			if err != nil || len(raw) != h.Size() {
				return nil, fmt.Errorf("measurement log record %d: %s digest %q is not %d bytes of hex", i, d.HashAlg, d.Digest, h.Size())
			}
		}
		if r.ContentType == "" {
			return nil, fmt.Errorf("measurement log record %d: no content_type", i)
		}
		out = append(out, r)
	}
	return out, nil
}

// ReplayPCR folds the log's digests for pcr and bank into the value the PCR
// must hold if it started at zero and saw exactly these extends.
func ReplayPCR(recs []LogRecord, pcr int, bank Bank) ([]byte, error) {
	h, err := bank.Hash()
	if err != nil {
		return nil, err
	}
	v := make([]byte, h.Size())
	for _, r := range recs {
		if r.PCR != pcr {
			continue
		}
		for _, d := range r.Digests {
			if !strings.EqualFold(d.HashAlg, string(bank)) {
				continue
			}
			raw, err := hex.DecodeString(d.Digest)
			if err != nil {
				return nil, fmt.Errorf("replay pcr %d: %w", pcr, err)
			}
			if v, err = ExtendValue(bank, v, raw); err != nil {
				return nil, err
			}
		}
	}
	return v, nil
}
