package dm

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	root64 = "4392712b4d1bcd6e0bb0fa0bce4eb0da05e2a0f2b6dafcea1fb4c3c4b1c7b8c2"
	salt64 = "1f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c5b6a7988"
)

func baseVerity() VerityParams {
	return VerityParams{
		HashType: 1, DataDevice: "/dev/vda2", HashDevice: "/dev/vda3",
		DataBlockSize: 4096, HashBlockSize: 4096, DataBlocks: 262144, HashStartBlock: 1,
		Algorithm: "sha256", RootDigest: root64, Salt: salt64,
	}
}

func TestVerityTarget(t *testing.T) {
	tests := map[string]struct {
		mod  func(*VerityParams)
		want string
	}{
		"reference example (formats-and-peers.md 1a)": {
			mod:  func(*VerityParams) {},
			want: "0 2097152 verity 1 /dev/vda2 /dev/vda3 4096 4096 262144 1 sha256 " + root64 + " " + salt64,
		},
		"no salt is a dash": {
			mod:  func(p *VerityParams) { p.Salt = "" },
			want: "0 2097152 verity 1 /dev/vda2 /dev/vda3 4096 4096 262144 1 sha256 " + root64 + " -",
		},
		"upper-case hex is lowered": {
			mod:  func(p *VerityParams) { p.RootDigest = strings.ToUpper(root64) },
			want: "0 2097152 verity 1 /dev/vda2 /dev/vda3 4096 4096 262144 1 sha256 " + root64 + " " + salt64,
		},
		"512-byte data blocks, hash type 0": {
			mod: func(p *VerityParams) {
				p.HashType, p.DataBlockSize, p.DataBlocks, p.HashStartBlock = 0, 512, 100, 0
			},
			want: "0 100 verity 0 /dev/vda2 /dev/vda3 512 4096 100 0 sha256 " + root64 + " " + salt64,
		},
		"every flag in cryptsetup order": {
			mod: func(p *VerityParams) {
				p.RestartOnCorruption, p.RestartOnError = true, true
				p.IgnoreZeroBlocks, p.CheckAtMostOnce, p.TryVerifyInTasklet = true, true, true
				p.FEC = &VerityFEC{Device: "/dev/vda4", Start: 264200, Blocks: 264200, Roots: 2}
				p.RootHashSigKeyDesc = "cryptsetup:0123-root"
			},
			want: "0 2097152 verity 1 /dev/vda2 /dev/vda3 4096 4096 262144 1 sha256 " + root64 + " " + salt64 +
				" 15 restart_on_corruption restart_on_error ignore_zero_blocks check_at_most_once try_verify_in_tasklet" +
				" use_fec_from_device /dev/vda4 fec_start 264200 fec_blocks 264200 fec_roots 2" +
				" root_hash_sig_key_desc cryptsetup:0123-root",
		},
		"panic modes": {
			mod:  func(p *VerityParams) { p.PanicOnCorruption, p.PanicOnError = true, true },
			want: "0 2097152 verity 1 /dev/vda2 /dev/vda3 4096 4096 262144 1 sha256 " + root64 + " " + salt64 + " 2 panic_on_corruption panic_on_error",
		},
		"ignore corruption alone": {
			mod:  func(p *VerityParams) { p.IgnoreCorruption = true },
			want: "0 2097152 verity 1 /dev/vda2 /dev/vda3 4096 4096 262144 1 sha256 " + root64 + " " + salt64 + " 1 ignore_corruption",
		},
		"FEC only counts 8": {
			mod:  func(p *VerityParams) { p.FEC = &VerityFEC{Device: "/dev/vda3", Start: 9, Blocks: 10, Roots: 24} },
			want: "0 2097152 verity 1 /dev/vda2 /dev/vda3 4096 4096 262144 1 sha256 " + root64 + " " + salt64 + " 8 use_fec_from_device /dev/vda3 fec_start 9 fec_blocks 10 fec_roots 24",
		},
		"signature only counts 2": {
			mod:  func(p *VerityParams) { p.RootHashSigKeyDesc = "k" },
			want: "0 2097152 verity 1 /dev/vda2 /dev/vda3 4096 4096 262144 1 sha256 " + root64 + " " + salt64 + " 2 root_hash_sig_key_desc k",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := baseVerity()
			tc.mod(&p)
			tg, err := p.Target()
			if err != nil {
				t.Fatalf("Target: %v", err)
			}
			if diff := cmp.Diff(tc.want, tg.Line()); diff != "" {
				t.Errorf("table line (-want +got):\n%s", diff)
			}
			back, err := ParseTarget(tg.Line())
			if err != nil {
				t.Fatalf("ParseTarget: %v", err)
			}
			if diff := cmp.Diff(tg, back); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestVerityInvalid(t *testing.T) {
	tests := map[string]struct {
		mod  func(*VerityParams)
		want string
	}{
		"two corruption modes":  {func(p *VerityParams) { p.IgnoreCorruption, p.PanicOnCorruption = true, true }, "mutually exclusive"},
		"restart and panic":     {func(p *VerityParams) { p.RestartOnCorruption, p.PanicOnCorruption = true, true }, "mutually exclusive"},
		"two error modes":       {func(p *VerityParams) { p.RestartOnError, p.PanicOnError = true, true }, "restart_on_error and panic_on_error"},
		"root not hex":          {func(p *VerityParams) { p.RootDigest = "xyz" }, "root digest"},
		"root empty":            {func(p *VerityParams) { p.RootDigest = "" }, "root digest"},
		"root wrong length":     {func(p *VerityParams) { p.RootDigest = root64[:40] }, "sha256 needs 32"},
		"salt odd":              {func(p *VerityParams) { p.Salt = "abc" }, "salt"},
		"hash type 2":           {func(p *VerityParams) { p.HashType = 2 }, "hash type"},
		"block size 1000":       {func(p *VerityParams) { p.DataBlockSize = 1000 }, "data block size"},
		"hash block 256":        {func(p *VerityParams) { p.HashBlockSize = 256 }, "hash block size"},
		"no blocks":             {func(p *VerityParams) { p.DataBlocks = 0 }, "zero data blocks"},
		"overflow":              {func(p *VerityParams) { p.DataBlocks = 1 << 62 }, "overflow"},
		"space in device":       {func(p *VerityParams) { p.DataDevice = "/dev/a b" }, "white space"},
		"no hash device":        {func(p *VerityParams) { p.HashDevice = "" }, "hash device is empty"},
		"fec roots 1":           {func(p *VerityParams) { p.FEC = &VerityFEC{Device: "/dev/x", Blocks: 1, Roots: 1} }, "fec_roots"},
		"fec roots 25":          {func(p *VerityParams) { p.FEC = &VerityFEC{Device: "/dev/x", Blocks: 1, Roots: 25} }, "fec_roots"},
		"fec no device":         {func(p *VerityParams) { p.FEC = &VerityFEC{Blocks: 1, Roots: 2} }, "FEC device"},
		"sig desc with space":   {func(p *VerityParams) { p.RootHashSigKeyDesc = "a b" }, "signature key"},
		"algorithm with spaces": {func(p *VerityParams) { p.Algorithm = "sha 256" }, "algorithm"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := baseVerity()
			tc.mod(&p)
			_, err := p.Target()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Target error = %v, want it to mention %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "dm: verity: ") {
				t.Errorf("error %q lacks the dm: verity: context", err)
			}
		})
	}
}

var testKey = []byte{
	0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
	0x01, 0x12, 0x23, 0x34, 0x45, 0x56, 0x67, 0x78, 0x89, 0x9a, 0xab, 0xbc, 0xcd, 0xde, 0xef, 0xf0,
}

const testKeyHex = "00112233445566778899aabbccddeeff0112233445566778899aabbccddeeff0"

func TestCryptTarget(t *testing.T) {
	tests := map[string]struct {
		p      CryptParams
		length uint64
		want   string
	}{
		"LUKS2 without integrity (formats-and-peers.md 1b)": {
			p:      CryptParams{Cipher: "aes-xts-plain64", Key: testKey, Device: "/dev/vda4", Offset: 32768, SectorSize: 4096},
			length: 65536,
			want:   "0 65536 crypt aes-xts-plain64 " + testKeyHex + " 0 /dev/vda4 32768 1 sector_size:4096",
		},
		"512-byte sectors have no options": {
			p:      CryptParams{Cipher: "aes-xts-plain64", Key: testKey, Device: "253:0", SectorSize: 512},
			length: 8,
			want:   "0 8 crypt aes-xts-plain64 " + testKeyHex + " 0 253:0 0",
		},
		// The kernel's crypt_status prints integrity before sector_size;
		// cryptsetup loads them the other way round.
		"authenc hmac-sha256 over dm-integrity with keyring key": {
			p: CryptParams{
				Cipher:     "capi:authenc(hmac(sha256),xts(aes))-plain64",
				Keyring:    &KeyringKey{Size: 96, Type: "logon", Description: "cryptsetup:0f4b-d0"},
				Device:     "/dev/mapper/state_dif",
				SectorSize: 4096, Integrity: &CryptIntegrity{TagSize: 32, Type: "aead"},
			},
			length: 1000,
			want:   "0 1000 crypt capi:authenc(hmac(sha256),xts(aes))-plain64 :96:logon:cryptsetup:0f4b-d0 0 /dev/mapper/state_dif 0 2 integrity:32:aead sector_size:4096",
		},
		"gcm random": {
			p: CryptParams{
				Cipher: "capi:gcm(aes)-random", Key: testKey, Device: "/dev/mapper/x_dif",
				SectorSize: 4096, Integrity: &CryptIntegrity{TagSize: 28, Type: "aead"},
			},
			length: 1000,
			want:   "0 1000 crypt capi:gcm(aes)-random " + testKeyHex + " 0 /dev/mapper/x_dif 0 2 integrity:28:aead sector_size:4096",
		},
		"every option in kernel status order": {
			p: CryptParams{
				Cipher: "aes-xts-plain64", Key: testKey, IVOffset: 8, Device: "/dev/sda", Offset: 4096,
				AllowDiscards: true, SameCPUCrypt: true, HighPriority: true, SubmitFromCryptCPUs: true,
				NoReadWorkqueue: true, NoWriteWorkqueue: true,
				Integrity:  &CryptIntegrity{TagSize: 16, Type: "none"},
				SectorSize: 4096, IVLargeSectors: true, IntegrityKeySize: 32,
			},
			length: 8,
			want: "8 8 crypt aes-xts-plain64 " + testKeyHex + " 8 /dev/sda 4096 10 allow_discards same_cpu_crypt high_priority" +
				" submit_from_crypt_cpus no_read_workqueue no_write_workqueue integrity:16:none sector_size:4096 iv_large_sectors integrity_key_size:32",
		},
		"null cipher has a dash key": {
			p:      CryptParams{Cipher: "cipher_null-ecb", Device: "/dev/sda"},
			length: 8,
			want:   "0 8 crypt cipher_null-ecb - 0 /dev/sda 0",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			start := uint64(0)
			if strings.HasPrefix(tc.want, "8 ") {
				start = 8
			}
			tg, err := tc.p.Target(start, tc.length)
			if err != nil {
				t.Fatalf("Target: %v", err)
			}
			if diff := cmp.Diff(tc.want, tg.Line()); diff != "" {
				t.Errorf("table line (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCryptInvalid(t *testing.T) {
	good := CryptParams{Cipher: "aes-xts-plain64", Key: testKey, Device: "/dev/sda"}
	tests := map[string]struct {
		mod    func(*CryptParams)
		length uint64
		want   string
	}{
		"no key":              {func(p *CryptParams) { p.Key = nil }, 8, "no key"},
		"key and keyring":     {func(p *CryptParams) { p.Keyring = &KeyringKey{Size: 32, Type: "logon", Description: "d"} }, 8, "both a key and a keyring"},
		"bad keyring type":    {func(p *CryptParams) { p.Key, p.Keyring = nil, &KeyringKey{Size: 32, Type: "bogus", Description: "d"} }, 8, "keyring key type"},
		"keyring size 0":      {func(p *CryptParams) { p.Key, p.Keyring = nil, &KeyringKey{Type: "logon", Description: "d"} }, 8, "keyring key size"},
		"sector size 8192":    {func(p *CryptParams) { p.SectorSize = 8192 }, 16, "sector size 8192"},
		"sector size 1000":    {func(p *CryptParams) { p.SectorSize = 1000 }, 16, "sector size 1000"},
		"length not aligned":  {func(p *CryptParams) { p.SectorSize = 4096 }, 12, "not a multiple"},
		"iv offset unaligned": {func(p *CryptParams) { p.SectorSize, p.IVOffset = 4096, 3 }, 16, "iv_offset"},
		"integrity type":      {func(p *CryptParams) { p.Integrity = &CryptIntegrity{TagSize: 32, Type: "hmac"} }, 8, "integrity type"},
		"integrity tag 0":     {func(p *CryptParams) { p.Integrity = &CryptIntegrity{Type: "aead"} }, 8, "tag size"},
		"integrity tag 481":   {func(p *CryptParams) { p.Integrity = &CryptIntegrity{TagSize: 481, Type: "aead"} }, 8, "tag size"},
		"key size w/o integ":  {func(p *CryptParams) { p.IntegrityKeySize = 32 }, 8, "integrity_key_size needs integrity"},
		"capi without iv":     {func(p *CryptParams) { p.Cipher = "capi:gcm(aes)" }, 8, "capi:"},
		"no device":           {func(p *CryptParams) { p.Device = "" }, 8, "device is empty"},
		"zero length":         {func(*CryptParams) {}, 0, "zero length"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := good
			tc.mod(&p)
			_, err := p.Target(0, tc.length)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Target error = %v, want it to mention %q", err, tc.want)
			}
			if strings.Contains(err.Error(), testKeyHex) {
				t.Errorf("error leaks the key: %v", err)
			}
		})
	}
}

func TestIntegrityTarget(t *testing.T) {
	tests := map[string]struct {
		p    IntegrityParams
		want string
	}{
		"LUKS2 dif device (formats-and-peers.md 1b)": {
			p:    IntegrityParams{Device: "/dev/vda4", Offset: 32768, TagSize: 32, BlockSize: 4096, FixPadding: true, FixHMAC: true},
			want: "0 1000 integrity /dev/vda4 32768 32 J 3 block_size:4096 fix_padding fix_hmac",
		},
		"no options still has a count": {
			p:    IntegrityParams{Device: "/dev/vda4", Offset: 0, TagSize: 28, Mode: IntegrityDirect},
			want: "0 1000 integrity /dev/vda4 0 28 D 0",
		},
		"journal mode, all options in cryptsetup order": {
			p: IntegrityParams{
				Device: "/dev/sdb", Offset: 8, TagSize: 4, Mode: IntegrityJournal,
				JournalSectors: 1024, JournalWatermark: 50, CommitTime: 10000, InterleaveSectors: 32768,
				BlockSize: 512, BufferSectors: 128,
				InternalHash: &IntegrityAlg{Name: "hmac(sha256)", Key: testKey},
				JournalMAC:   &IntegrityAlg{Name: "hmac(sha256)", Key: []byte{1, 2}},
				JournalCrypt: &IntegrityAlg{Name: "ctr(aes)", Key: []byte{3, 4}},
				FixPadding:   true, FixHMAC: true, LegacyRecalculate: true, Recalculate: true, ResetRecalculate: true,
				AllowDiscards: true, MetaDevice: "/dev/sdc",
			},
			want: "0 1000 integrity /dev/sdb 8 4 J 16 journal_sectors:1024 journal_watermark:50 commit_time:10000" +
				" interleave_sectors:32768 block_size:512 buffer_sectors:128 internal_hash:hmac(sha256):" + testKeyHex +
				" journal_mac:hmac(sha256):0102 journal_crypt:ctr(aes):0304 fix_padding fix_hmac legacy_recalculate" +
				" recalculate reset_recalculate allow_discards meta_device:/dev/sdc",
		},
		"bitmap mode uses the overloaded slots": {
			p: IntegrityParams{
				Device: "/dev/sdb", TagSize: 4, Mode: IntegrityBitmap, JournalSectors: 64,
				SectorsPerBit: 65536, BitmapFlushInterval: 10000, InternalHash: &IntegrityAlg{Name: "crc32c"},
			},
			want: "0 1000 integrity /dev/sdb 0 4 B 4 journal_sectors:64 sectors_per_bit:65536 bitmap_flush_interval:10000 internal_hash:crc32c",
		},
		"tag size from internal hash": {
			p:    IntegrityParams{Device: "/dev/sdb", Mode: IntegrityRecovery, InternalHash: &IntegrityAlg{Name: "sha256"}},
			want: "0 1000 integrity /dev/sdb 0 0 R 1 internal_hash:sha256",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tg, err := tc.p.Target(0, 1000)
			if err != nil {
				t.Fatalf("Target: %v", err)
			}
			if diff := cmp.Diff(tc.want, tg.Line()); diff != "" {
				t.Errorf("table line (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIntegrityInvalid(t *testing.T) {
	tests := map[string]struct {
		p    IntegrityParams
		want string
	}{
		"bad mode":             {IntegrityParams{Device: "/d", TagSize: 4, Mode: 'X'}, "mode"},
		"no tag no hash":       {IntegrityParams{Device: "/d"}, "tag size 0"},
		"watermark in B":       {IntegrityParams{Device: "/d", TagSize: 4, Mode: IntegrityBitmap, JournalWatermark: 50}, "bitmap mode"},
		"sectors_per_bit in J": {IntegrityParams{Device: "/d", TagSize: 4, SectorsPerBit: 8}, "need bitmap mode"},
		"watermark 101":        {IntegrityParams{Device: "/d", TagSize: 4, JournalWatermark: 101}, "percentage"},
		"block size 8192":      {IntegrityParams{Device: "/d", TagSize: 4, BlockSize: 8192}, "block_size"},
		"interleave 1000":      {IntegrityParams{Device: "/d", TagSize: 4, InterleaveSectors: 1000}, "interleave_sectors"},
		"colon in algorithm":   {IntegrityParams{Device: "/d", TagSize: 4, InternalHash: &IntegrityAlg{Name: "a:b", Key: testKey}}, "contains ':'"},
		"no device":            {IntegrityParams{TagSize: 4}, "device is empty"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := tc.p.Target(0, 8)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Target error = %v, want it to mention %q", err, tc.want)
			}
			if strings.Contains(err.Error(), testKeyHex) {
				t.Errorf("error leaks the key: %v", err)
			}
		})
	}
}

func TestCloneTarget(t *testing.T) {
	base := CloneParams{MetadataDevice: "/dev/vdc", DestinationDevice: "/dev/mapper/state", SourceDevice: "/dev/mapper/root", RegionSize: 8}
	tests := map[string]struct {
		mod  func(*CloneParams)
		want string
	}{
		"plain (systemd #39500 recipe)": {func(*CloneParams) {}, "0 4096 clone /dev/vdc /dev/mapper/state /dev/mapper/root 8"},
		"no_hydration (systemd-clonesetup)": {
			func(p *CloneParams) { p.NoHydration = true },
			"0 4096 clone /dev/vdc /dev/mapper/state /dev/mapper/root 8 1 no_hydration",
		},
		"core args only need an empty feature group": {
			func(p *CloneParams) { p.HydrationThreshold = 64 },
			"0 4096 clone /dev/vdc /dev/mapper/state /dev/mapper/root 8 0 2 hydration_threshold 64",
		},
		"everything": {
			func(p *CloneParams) {
				p.RegionSize, p.NoHydration, p.NoDiscardPassdown = 2097152, true, true
				p.HydrationThreshold, p.HydrationBatchSize = 32, 16
			},
			"0 4096 clone /dev/vdc /dev/mapper/state /dev/mapper/root 2097152 2 no_hydration no_discard_passdown 4 hydration_threshold 32 hydration_batch_size 16",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := base
			tc.mod(&p)
			tg, err := p.Target(0, 4096)
			if err != nil {
				t.Fatalf("Target: %v", err)
			}
			if diff := cmp.Diff(tc.want, tg.Line()); diff != "" {
				t.Errorf("table line (-want +got):\n%s", diff)
			}
		})
	}
	for _, rs := range []uint64{0, 4, 12, 4194304} {
		p := base
		p.RegionSize = rs
		if _, err := p.Target(0, 8); err == nil || !strings.Contains(err.Error(), "region size") {
			t.Errorf("region size %d: error = %v, want a region size error", rs, err)
		}
	}
	p := base
	p.SourceDevice = ""
	if _, err := p.Target(0, 8); err == nil || !strings.Contains(err.Error(), "source device is empty") {
		t.Errorf("empty source: error = %v", err)
	}
}

func TestLinearTarget(t *testing.T) {
	tg, err := LinearParams{Device: "/dev/vdb", Offset: 2048}.Target(100, 50)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Target{Start: 100, Length: 50, Type: "linear", Params: "/dev/vdb 2048"}, tg); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := (LinearParams{Device: "a b"}).Target(0, 1); err == nil {
		t.Error("device with a space: want an error")
	}
	if _, err := (LinearParams{Device: "/dev/a"}).Target(0, 0); err == nil {
		t.Error("zero length: want an error")
	}
}

func TestRedaction(t *testing.T) {
	crypt, err := CryptParams{Cipher: "aes-xts-plain64", Key: testKey, Device: "/dev/sda"}.Target(0, 8)
	if err != nil {
		t.Fatal(err)
	}
	integ, err := IntegrityParams{
		Device: "/dev/sdb", TagSize: 32,
		InternalHash: &IntegrityAlg{Name: "hmac(sha256)", Key: testKey},
		JournalCrypt: &IntegrityAlg{Name: "ctr(aes)", Key: testKey},
		JournalMAC:   &IntegrityAlg{Name: "hmac(sha256)", Key: testKey},
	}.Target(0, 8)
	if err != nil {
		t.Fatal(err)
	}
	keyring, err := CryptParams{Cipher: "aes-xts-plain64", Keyring: &KeyringKey{Size: 64, Type: "logon", Description: "cryptsetup:u-d0"}, Device: "/dev/sda"}.Target(0, 8)
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		tg   Target
		want string
	}{
		"crypt hex key":  {crypt, "0 8 crypt aes-xts-plain64 <redacted> 0 /dev/sda 0"},
		"integrity keys": {integ, "0 8 integrity /dev/sdb 0 32 J 3 internal_hash:hmac(sha256):<redacted> journal_mac:hmac(sha256):<redacted> journal_crypt:ctr(aes):<redacted>"},
		"keyring kept":   {keyring, "0 8 crypt aes-xts-plain64 :64:logon:cryptsetup:u-d0 0 /dev/sda 0"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, tc.tg.Redacted()); diff != "" {
				t.Errorf("Redacted (-want +got):\n%s", diff)
			}
			for verb, s := range map[string]string{
				"String": tc.tg.String(), "%v": fmt.Sprintf("%v", tc.tg), "%+v": fmt.Sprintf("%+v", tc.tg),
				"Sprint": fmt.Sprint(tc.tg), "%#v": fmt.Sprintf("%#v", tc.tg), "slice %v": fmt.Sprintf("%v", []Target{tc.tg}),
			} {
				if strings.Contains(s, testKeyHex) {
					t.Errorf("%s leaks the key: %s", verb, s)
				}
			}
		})
	}
	if !strings.Contains(crypt.Line(), testKeyHex) {
		t.Errorf("Line() = %q lost the key", crypt.Line())
	}
}

func TestValidateTable(t *testing.T) {
	lin := func(start, length uint64) Target {
		return Target{Start: start, Length: length, Type: "linear", Params: "/dev/a 0"}
	}
	tests := map[string]struct {
		ts   []Target
		want string // "" = valid
	}{
		"one":          {[]Target{lin(0, 8)}, ""},
		"two adjacent": {[]Target{lin(0, 8), lin(8, 8)}, ""},
		"empty":        {nil, "empty table"},
		"gap":          {[]Target{lin(0, 8), lin(9, 8)}, "contiguous"},
		"overlap":      {[]Target{lin(0, 8), lin(4, 8)}, "contiguous"},
		"not at 0":     {[]Target{lin(1, 8)}, "contiguous"},
		"zero length":  {[]Target{lin(0, 0)}, "zero length"},
		"long type":    {[]Target{{Length: 1, Type: "abcdefghijklmnop"}}, "type name"},
		"newline":      {[]Target{{Length: 1, Type: "linear", Params: "a\nb"}}, "newline"},
		"overflow":     {[]Target{lin(0, 1<<63), lin(1<<63, 1<<63)}, "overflows"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := ValidateTable(tc.ts)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("ValidateTable: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ValidateTable error = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestParseTable(t *testing.T) {
	got, err := ParseTable("0 8 linear /dev/a 0\n\n8 16 zero\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []Target{{0, 8, "linear", "/dev/a 0"}, {8, 16, "zero", ""}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if diff := cmp.Diff("0 8 linear /dev/a 0\n8 16 zero\n", FormatTable(got)); diff != "" {
		t.Errorf("FormatTable (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"0 8", "x 8 linear", "0 y linear", "0 8 linear a\n4 8 linear b"} {
		if _, err := ParseTable(bad); err == nil {
			t.Errorf("ParseTable(%q): want an error", bad)
		}
	}
}
