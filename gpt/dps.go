package gpt

// Partition type GUIDs of the Discoverable Partitions Specification for
// x86-64 (uapi-group specs/discoverable_partitions_specification.md), plus
// the ESP type from the UEFI specification. Each was checked against the
// specification's table (names in parentheses are systemd's SD_GPT_*
// constants). Treat them as constants: they are variables only because Go
// has no constant arrays.
var (
	// TypeRootX86_64 is the x86-64 root partition (SD_GPT_ROOT_X86_64).
	TypeRootX86_64 = mustParseGUID("4f68bce3-e8cd-4db1-96e7-fbcaf984b709")
	// TypeUsrX86_64 is the x86-64 /usr partition (SD_GPT_USR_X86_64).
	TypeUsrX86_64 = mustParseGUID("8484680c-9521-48c6-9c11-b0720656f69e")
	// TypeRootVerityX86_64 is the dm-verity hash partition for the x86-64
	// root partition (SD_GPT_ROOT_X86_64_VERITY).
	TypeRootVerityX86_64 = mustParseGUID("2c7357ed-ebd2-46d9-aec1-23d437ec2bf5")
	// TypeUsrVerityX86_64 is the dm-verity hash partition for the x86-64
	// /usr partition (SD_GPT_USR_X86_64_VERITY).
	TypeUsrVerityX86_64 = mustParseGUID("77ff5f63-e7b6-4633-acf4-1565b864c0e6")
	// TypeRootVeritySigX86_64 is the root verity signature partition, a
	// NUL-padded JSON object with the root hash and a PKCS#7 signature
	// (SD_GPT_ROOT_X86_64_VERITY_SIG).
	TypeRootVeritySigX86_64 = mustParseGUID("41092b05-9fc8-4523-994f-2def0408b176")
	// TypeUsrVeritySigX86_64 is the /usr verity signature partition
	// (SD_GPT_USR_X86_64_VERITY_SIG).
	TypeUsrVeritySigX86_64 = mustParseGUID("e7bb33fb-06cf-4e81-8273-e543b413e2e2")
	// TypeESP is the EFI System Partition (SD_GPT_ESP).
	TypeESP = mustParseGUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")
	// TypeXBOOTLDR is the Extended Boot Loader Partition (SD_GPT_XBOOTLDR).
	TypeXBOOTLDR = mustParseGUID("bc13c2ff-59e6-4262-a352-b275fd6f7172")
	// TypeSwap is a swap partition (SD_GPT_SWAP).
	TypeSwap = mustParseGUID("0657fd6d-a4ab-43c4-84e5-0933c84b4f4f")
	// TypeHome is the /home partition (SD_GPT_HOME).
	TypeHome = mustParseGUID("933ac7e1-2eb4-4f13-b844-0e14e2aef915")
	// TypeSrv is the /srv partition (SD_GPT_SRV).
	TypeSrv = mustParseGUID("3b8f8425-20e0-4f3b-907f-1a25a76f98e8")
	// TypeVar is the /var partition (SD_GPT_VAR). systemd auto-mounts it only
	// when its partition UUID is derived from the machine ID (see the DPS).
	TypeVar = mustParseGUID("4d21b016-b534-45c2-a9fb-5c16e091fd2d")
	// TypeTmp is the /var/tmp partition (SD_GPT_TMP).
	TypeTmp = mustParseGUID("7ec6f557-3bc5-4aca-b293-16ef5df639d1")
	// TypeLinuxGeneric is a generic Linux data partition, never auto-mounted
	// (SD_GPT_LINUX_GENERIC).
	TypeLinuxGeneric = mustParseGUID("0fc63daf-8483-4772-8e79-3d69d8477de4")
)

// Partition attribute bits (UEFI specification 5.3.3, table "Defined GPT
// Partition Entry - Attributes"; bits 59, 60 and 63 are the DPS flags, bit 62
// the Microsoft basic data "hidden" bit that DPS tools also honour).
const (
	// AttrRequired (bit 0) marks a partition required for the platform to work.
	AttrRequired uint64 = 1 << 0
	// AttrNoBlockIO (bit 1) asks firmware not to produce an EFI_BLOCK_IO_PROTOCOL.
	AttrNoBlockIO uint64 = 1 << 1
	// AttrLegacyBIOSBootable (bit 2) marks a partition bootable by legacy BIOS.
	AttrLegacyBIOSBootable uint64 = 1 << 2
	// AttrGrowFS (bit 59, SD_GPT_FLAG_GROWFS) asks systemd to grow the file
	// system to the partition size on first mount.
	AttrGrowFS uint64 = 1 << 59
	// AttrReadOnly (bit 60, SD_GPT_FLAG_READ_ONLY) asks for a read-only mount.
	AttrReadOnly uint64 = 1 << 60
	// AttrHidden (bit 62) hides the partition.
	AttrHidden uint64 = 1 << 62
	// AttrNoAuto (bit 63, SD_GPT_FLAG_NO_AUTO) excludes the partition from
	// automatic discovery.
	AttrNoAuto uint64 = 1 << 63
)

// VerityUUIDs returns the partition UUIDs the DPS assigns to a dm-verity
// data partition and its hash partition for rootHash: the data partition's
// UUID is the first 128 bits of the root hash and the hash partition's the
// last 128 bits, taken byte for byte into the canonical text order (no
// byte swapping, no version bits). This is what systemd-repart writes and
// what systemd-dissect and the veritysetup generator look for: they memcpy
// the root hash into an sd_id128_t, which is in text order, and compare it
// with the PARTUUID string parsed by sd_id128_from_string.
//
// A rootHash shorter than 16 bytes has no DPS UUIDs; VerityUUIDs returns
// zero GUIDs for it, which never match a used partition entry.
func VerityUUIDs(rootHash []byte) (data, hash GUID) {
	if len(rootHash) < len(GUID{}) {
		return GUID{}, GUID{}
	}
	copy(data[:], rootHash)
	copy(hash[:], rootHash[len(rootHash)-len(GUID{}):])
	return data, hash
}

// Find returns the partitions of t whose type is typ and, when label is not
// empty, whose name is exactly label, in entry-array order. The initrd uses it
// to find its root, verity-hash and state partitions.
func Find(t *Table, typ GUID, label string) []Partition {
	var out []Partition
	if t == nil {
		return nil
	}
	for _, p := range t.Partitions {
		if p.Type == typ && (label == "" || p.Name == label) {
			out = append(out, p)
		}
	}
	return out
}
