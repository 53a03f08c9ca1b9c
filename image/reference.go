package image

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"

	"github.com/confidisk/confidisk/attest"
	"github.com/confidisk/confidisk/secureboot"
	"github.com/confidisk/confidisk/uki"
)

// Measurement is one predicted PCR extend, for the reference document.
type Measurement struct {
	PCR         int    `json:"pcr"`
	Description string `json:"description"`
	Digest      string `json:"digest"`
}

// Reference is what a good boot of an image measures, computed from the
// artefacts alone (never read from a guest).
type Reference struct {
	// PCRs are the predicted SHA-256 values by PCR index (hex).
	PCRs map[int]string `json:"pcrs"`
	// Measurements are the events behind them, in extend order per PCR.
	Measurements []Measurement `json:"measurements"`
	// RootHash is the dm-verity root hash (hex).
	RootHash string `json:"root_hash"`
	// Stub and AddonStub identify the systemd stubs.
	Stub      string `json:"stub"`
	AddonStub string `json:"addon_stub,omitempty"`
}

// EDK2's PCR 4 events before the boot application (TCG PC Client Platform
// Firmware Profile 3.3.4.5 and 10.4.1): the EV_EFI_ACTION string measured
// when a boot option is started, and the EV_SEPARATOR of ReadyToBoot.
const bootOptionAction = "Calling EFI Application from Boot Option"

// Predict computes the reference values of a boot of art through UEFI
// firmware with Secure Boot on, the firmware's variables holding sb
// (see [secureboot.KeySet.SecureBootVars]):
//
//   - PCR 4: the boot-option action, the separator, then the Authenticode
//     digest of each image the firmware loads, the UKI and then its addon
//     (EV_EFI_BOOT_SERVICES_APPLICATION); with Secure Boot the stub starts
//     the embedded kernel past the firmware's verification hook, which
//     measures nothing more;
//   - PCR 7: [secureboot.PredictPCR7];
//   - PCR 11: [uki.KernelBootEvents] for the stub's release;
//   - PCR 12: [uki.AddonEvents] for the addon's command line (zero without
//     an addon);
//   - PCR 13: [uki.SysextEvents] for the system extensions next to the UKI
//     (zero without any).
func Predict(art *BootArtifacts, rootHash []byte, sb secureboot.SecureBootVars) (*Reference, error) {
	ref := &Reference{PCRs: map[int]string{}, RootHash: hex.EncodeToString(rootHash), Stub: art.Stub.String()}
	add := func(pcr int, what string, digest [32]byte) {
		ref.Measurements = append(ref.Measurements, Measurement{PCR: pcr, Description: what, Digest: hex.EncodeToString(digest[:])})
	}
	pcr4 := []uki.Event{
		{PCR: 4, Description: "EV_EFI_ACTION " + bootOptionAction, Digest: sha256.Sum256([]byte(bootOptionAction))},
		{PCR: 4, Description: "EV_SEPARATOR", Digest: sha256.Sum256([]byte{0, 0, 0, 0})},
	}
	apps := []struct {
		what string
		pe   []byte
	}{{"uki " + UKIPath, art.UKI}, {"addon " + AddonPath, art.Addon}}
	if art.Addon != nil {
		ref.AddonStub = art.AddonStub.String()
	}
	for _, app := range apps {
		if app.pe == nil {
			continue // no addon
		}
		d, err := secureboot.AuthenticodeDigest(app.pe)
		if err != nil {
			return nil, fmt.Errorf("pcr 4: %s: %w", app.what, err)
		}
		pcr4 = append(pcr4, uki.Event{PCR: 4, Description: "EV_EFI_BOOT_SERVICES_APPLICATION " + app.what, Digest: [32]byte(d)})
	}
	pcr7, ev7 := secureboot.PredictPCR7(sb)
	var pcr7Events []uki.Event
	for _, e := range ev7 {
		pcr7Events = append(pcr7Events, uki.Event{PCR: 7, Description: pcr7Description(e), Digest: e.Digest})
	}
	pcr11, err := uki.KernelBootEvents(art.UKI)
	if err != nil {
		return nil, fmt.Errorf("pcr 11: %w", err)
	}
	var pcr12 []uki.Event
	if art.Addon != nil {
		pcr12 = uki.AddonEvents(nil, []string{art.AddonCmdline})
	}
	pcr13 := uki.SysextEvents(art.Sysexts)
	for _, evs := range [][]uki.Event{pcr4, pcr7Events, pcr11, pcr12, pcr13} {
		for _, e := range evs {
			add(e.PCR, e.Description, e.Digest)
		}
	}
	set := func(pcr int, v [32]byte) { ref.PCRs[pcr] = hex.EncodeToString(v[:]) }
	set(4, uki.Extend(pcr4))
	set(7, pcr7)
	set(uki.PCRKernelBoot, uki.Extend(pcr11))
	set(uki.PCRKernelConfig, uki.Extend(pcr12))
	set(uki.PCRSysexts, uki.Extend(pcr13))
	return ref, nil
}

func pcr7Description(e secureboot.Event) string {
	switch e.Type {
	case secureboot.EventSeparator:
		return "EV_SEPARATOR"
	case secureboot.EventEFIVariableAuthority:
		return "EV_EFI_VARIABLE_AUTHORITY " + e.Name
	default:
		return "EV_EFI_VARIABLE_DRIVER_CONFIG " + e.Name
	}
}

// Policy returns the broker policy (package attest) that accepts exactly
// the boots ref predicts: the listed PCRs at their predicted values. The
// root hash is bound by PCR 12 (the addon's roothash=) or PCR 11 (the UKI's
// own command line); it is also listed as the only root hash a dm-verity
// record in PCR 15 may carry. confidisk boot writes no such record, so the
// policy does not require one.
func (ref *Reference) Policy(pcrs []int) (*attest.Policy, error) {
	p := &attest.Policy{Version: 1, PCRs: map[int][]string{}, RootHashes: []string{ref.RootHash}}
	for _, i := range pcrs {
		v, ok := ref.PCRs[i]
		if !ok {
			return nil, fmt.Errorf("pcr %d is not predicted (predicted: %v)", i, slices.Sorted(maps.Keys(ref.PCRs)))
		}
		p.PCRs[i] = []string{v}
	}
	return p, nil
}
