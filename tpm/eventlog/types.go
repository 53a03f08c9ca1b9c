package eventlog

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"fmt"
	"hash"

	"github.com/google/go-tpm/tpm2"
)

// Event types (PFP section 10.4.1, table "Event Types"; EV_UNUSED, EV_IPL
// and EV_IPL_PARTITION_DATA come from the PC Client Implementation
// Specification for Conventional BIOS and still appear in BIOS logs).
const (
	EvPrebootCert                uint32 = 0x00000000
	EvPostCode                   uint32 = 0x00000001
	EvUnused                     uint32 = 0x00000002
	EvNoAction                   uint32 = 0x00000003 // never extended into a PCR
	EvSeparator                  uint32 = 0x00000004
	EvAction                     uint32 = 0x00000005
	EvEventTag                   uint32 = 0x00000006
	EvSCRTMContents              uint32 = 0x00000007
	EvSCRTMVersion               uint32 = 0x00000008
	EvCPUMicrocode               uint32 = 0x00000009
	EvPlatformConfigFlags        uint32 = 0x0000000A
	EvTableOfDevices             uint32 = 0x0000000B
	EvCompactHash                uint32 = 0x0000000C
	EvIPL                        uint32 = 0x0000000D
	EvIPLPartitionData           uint32 = 0x0000000E
	EvNonhostCode                uint32 = 0x0000000F
	EvNonhostConfig              uint32 = 0x00000010
	EvNonhostInfo                uint32 = 0x00000011
	EvOmitBootDeviceEvents       uint32 = 0x00000012
	EvEFIEventBase               uint32 = 0x80000000
	EvEFIVariableDriverConfig    uint32 = 0x80000001
	EvEFIVariableBoot            uint32 = 0x80000002
	EvEFIBootServicesApplication uint32 = 0x80000003
	EvEFIBootServicesDriver      uint32 = 0x80000004
	EvEFIRuntimeServicesDriver   uint32 = 0x80000005
	EvEFIGPTEvent                uint32 = 0x80000006
	EvEFIAction                  uint32 = 0x80000007
	EvEFIPlatformFirmwareBlob    uint32 = 0x80000008
	EvEFIHandoffTables           uint32 = 0x80000009
	EvEFIPlatformFirmwareBlob2   uint32 = 0x8000000A
	EvEFIHandoffTables2          uint32 = 0x8000000B
	EvEFIVariableBoot2           uint32 = 0x8000000C
	EvEFIGPTEvent2               uint32 = 0x8000000D
	EvEFIHCRTMEvent              uint32 = 0x80000010
	EvEFIVariableAuthority       uint32 = 0x800000E0
	EvEFISPDMFirmwareBlob        uint32 = 0x800000E1
	EvEFISPDMFirmwareConfig      uint32 = 0x800000E2
	EvEFISPDMDevicePolicy        uint32 = 0x800000E3
	EvEFISPDMDeviceAuthority     uint32 = 0x800000E4
)

var eventTypeNames = map[uint32]string{
	EvPrebootCert:                "EV_PREBOOT_CERT",
	EvPostCode:                   "EV_POST_CODE",
	EvUnused:                     "EV_UNUSED",
	EvNoAction:                   "EV_NO_ACTION",
	EvSeparator:                  "EV_SEPARATOR",
	EvAction:                     "EV_ACTION",
	EvEventTag:                   "EV_EVENT_TAG",
	EvSCRTMContents:              "EV_S_CRTM_CONTENTS",
	EvSCRTMVersion:               "EV_S_CRTM_VERSION",
	EvCPUMicrocode:               "EV_CPU_MICROCODE",
	EvPlatformConfigFlags:        "EV_PLATFORM_CONFIG_FLAGS",
	EvTableOfDevices:             "EV_TABLE_OF_DEVICES",
	EvCompactHash:                "EV_COMPACT_HASH",
	EvIPL:                        "EV_IPL",
	EvIPLPartitionData:           "EV_IPL_PARTITION_DATA",
	EvNonhostCode:                "EV_NONHOST_CODE",
	EvNonhostConfig:              "EV_NONHOST_CONFIG",
	EvNonhostInfo:                "EV_NONHOST_INFO",
	EvOmitBootDeviceEvents:       "EV_OMIT_BOOT_DEVICE_EVENTS",
	EvEFIEventBase:               "EV_EFI_EVENT_BASE",
	EvEFIVariableDriverConfig:    "EV_EFI_VARIABLE_DRIVER_CONFIG",
	EvEFIVariableBoot:            "EV_EFI_VARIABLE_BOOT",
	EvEFIBootServicesApplication: "EV_EFI_BOOT_SERVICES_APPLICATION",
	EvEFIBootServicesDriver:      "EV_EFI_BOOT_SERVICES_DRIVER",
	EvEFIRuntimeServicesDriver:   "EV_EFI_RUNTIME_SERVICES_DRIVER",
	EvEFIGPTEvent:                "EV_EFI_GPT_EVENT",
	EvEFIAction:                  "EV_EFI_ACTION",
	EvEFIPlatformFirmwareBlob:    "EV_EFI_PLATFORM_FIRMWARE_BLOB",
	EvEFIHandoffTables:           "EV_EFI_HANDOFF_TABLES",
	EvEFIPlatformFirmwareBlob2:   "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
	EvEFIHandoffTables2:          "EV_EFI_HANDOFF_TABLES2",
	EvEFIVariableBoot2:           "EV_EFI_VARIABLE_BOOT2",
	EvEFIGPTEvent2:               "EV_EFI_GPT_EVENT2",
	EvEFIHCRTMEvent:              "EV_EFI_HCRTM_EVENT",
	EvEFIVariableAuthority:       "EV_EFI_VARIABLE_AUTHORITY",
	EvEFISPDMFirmwareBlob:        "EV_EFI_SPDM_FIRMWARE_BLOB",
	EvEFISPDMFirmwareConfig:      "EV_EFI_SPDM_FIRMWARE_CONFIG",
	EvEFISPDMDevicePolicy:        "EV_EFI_SPDM_DEVICE_POLICY",
	EvEFISPDMDeviceAuthority:     "EV_EFI_SPDM_DEVICE_AUTHORITY",
}

// EventTypeName returns the PFP name of event type t (section 10.4.1), such
// as "EV_SEPARATOR", or t as "0x%08x" if the type is not one it knows.
func EventTypeName(t uint32) string {
	if n, ok := eventTypeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("0x%08x", t)
}

// knownDigestSizes are the digest sizes of the hash algorithms this package
// knows (TCG Algorithm Registry). A Spec ID event must declare exactly these
// sizes for them.
var knownDigestSizes = map[tpm2.TPMAlgID]int{
	tpm2.TPMAlgSHA1:    sha1.Size,
	tpm2.TPMAlgSHA256:  sha256.Size,
	tpm2.TPMAlgSHA384:  sha512.Size384,
	tpm2.TPMAlgSHA512:  sha512.Size,
	tpm2.TPMAlgSM3256:  32,
	tpm2.TPMAlgSHA3256: 32,
	tpm2.TPMAlgSHA3384: 48,
	tpm2.TPMAlgSHA3512: 64,
}

// newHash returns a constructor for alg, or nil if this package cannot
// compute alg (sm3_256 and algorithms it does not know).
func newHash(alg tpm2.TPMAlgID) func() hash.Hash {
	switch alg {
	case tpm2.TPMAlgSHA1:
		return sha1.New
	case tpm2.TPMAlgSHA256:
		return sha256.New
	case tpm2.TPMAlgSHA384:
		return sha512.New384
	case tpm2.TPMAlgSHA512:
		return sha512.New
	case tpm2.TPMAlgSHA3256:
		return func() hash.Hash { return sha3.New256() }
	case tpm2.TPMAlgSHA3384:
		return func() hash.Hash { return sha3.New384() }
	case tpm2.TPMAlgSHA3512:
		return func() hash.Hash { return sha3.New512() }
	}
	return nil
}

var algNames = map[tpm2.TPMAlgID]string{
	tpm2.TPMAlgSHA1:    "sha1",
	tpm2.TPMAlgSHA256:  "sha256",
	tpm2.TPMAlgSHA384:  "sha384",
	tpm2.TPMAlgSHA512:  "sha512",
	tpm2.TPMAlgSM3256:  "sm3_256",
	tpm2.TPMAlgSHA3256: "sha3_256",
	tpm2.TPMAlgSHA3384: "sha3_384",
	tpm2.TPMAlgSHA3512: "sha3_512",
}

// algName names alg for messages: "sha256", or "alg 0x%04x".
func algName(alg tpm2.TPMAlgID) string {
	if n, ok := algNames[alg]; ok {
		return n
	}
	return fmt.Sprintf("alg 0x%04x", uint16(alg))
}
