package tpm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// NV sentinel errors; test with errors.Is.
var (
	// ErrCounterUninitialised is returned when a counter index exists but
	// was never incremented (TPM_RC_NV_UNINITIALIZED): a new counter, or one
	// somebody deleted and re-created.
	ErrCounterUninitialised = errors.New("nv counter was never incremented")

	// ErrNVIndexMissing is returned when no index is defined at a handle.
	ErrNVIndexMissing = errors.New("nv index is not defined")

	// ErrNVIndexExists is returned when defining an index at a handle that
	// is taken.
	ErrNVIndexExists = errors.New("nv index is already defined")

	// ErrNVIndexMismatch is returned when the index at a handle is not of
	// the type, attributes and size this package defines (somebody else
	// defined it).
	ErrNVIndexMismatch = errors.New("nv index does not have the expected type and attributes")
)

// nvIndexFirst and nvIndexLast bound the NV index handle range
// (TPM_HT_NV_INDEX, Part 2, section 7.2).
const (
	nvIndexFirst tpm2.TPMHandle = 0x01000000
	nvIndexLast  tpm2.TPMHandle = 0x01ffffff
)

func checkNVIndex(index tpm2.TPMHandle) error {
	if index < nvIndexFirst || index > nvIndexLast {
		return fmt.Errorf("nv index 0x%08x is outside the nv index range 0x%08x..0x%08x", uint32(index), uint32(nvIndexFirst), uint32(nvIndexLast))
	}
	return nil
}

// CounterPublic is the public area [DefineCounter] gives a counter at index
// (see [DefineCounter] for the choice of attributes):
// TPM_NT_COUNTER, AUTHWRITE|AUTHREAD|NO_DA, sha256 name, empty authPolicy,
// 8 bytes.
func CounterPublic(index tpm2.TPMHandle) tpm2.TPMSNVPublic {
	return tpm2.TPMSNVPublic{
		NVIndex: index,
		NameAlg: tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{
			NT:        tpm2.TPMNTCounter,
			AuthWrite: true,
			AuthRead:  true,
			NoDA:      true,
		},
		DataSize: 8,
	}
}

// ExtendIndexPublic is the public area [DefineExtendIndex] gives an extend
// index at index for bank: TPM_NT_EXTEND with the bank's hash as nameAlg
// (which is also the extend hash, Part 2, section 13.5),
// AUTHWRITE|AUTHREAD|NO_DA, empty authPolicy, the digest size.
func ExtendIndexPublic(index tpm2.TPMHandle, bank Bank) (tpm2.TPMSNVPublic, error) {
	alg, err := bank.Alg()
	if err != nil {
		return tpm2.TPMSNVPublic{}, err
	}
	h, _ := bank.Hash()
	return tpm2.TPMSNVPublic{
		NVIndex: index,
		NameAlg: alg,
		Attributes: tpm2.TPMANV{
			NT:        tpm2.TPMNTExtend,
			AuthWrite: true,
			AuthRead:  true,
			NoDA:      true,
		},
		DataSize: uint16(h.Size()),
	}, nil
}

// defineNV defines pub in the owner hierarchy with an empty authValue
// (TPM2_NV_DefineSpace, Part 3, section 31.3).
func defineNV(t transport.TPM, pub tpm2.TPMSNVPublic) error {
	if err := checkNVIndex(pub.NVIndex); err != nil {
		return err
	}
	_, err := (tpm2.NVDefineSpace{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		PublicInfo: tpm2.New2B(pub),
	}).Execute(t)
	if errors.Is(err, tpm2.TPMRCNVDefined) {
		return fmt.Errorf("%w: 0x%08x (%v)", ErrNVIndexExists, uint32(pub.NVIndex), err)
	}
	return err
}

// readNVPublic reads the public area of index (TPM2_NV_ReadPublic, Part 3,
// section 31.6) and checks that it is want except for TPMA_NV_WRITTEN.
// It returns the index's Name and whether it was written.
func readNVPublic(t transport.TPM, want tpm2.TPMSNVPublic) (name tpm2.TPM2BName, written bool, err error) {
	if err := checkNVIndex(want.NVIndex); err != nil {
		return tpm2.TPM2BName{}, false, err
	}
	rp, err := (tpm2.NVReadPublic{NVIndex: want.NVIndex}).Execute(t)
	if err != nil {
		if errors.Is(err, tpm2.TPMRCHandle) {
			return tpm2.TPM2BName{}, false, fmt.Errorf("%w: 0x%08x", ErrNVIndexMissing, uint32(want.NVIndex))
		}
		return tpm2.TPM2BName{}, false, fmt.Errorf("read public area of nv index 0x%08x: %w", uint32(want.NVIndex), err)
	}
	got, err := rp.NVPublic.Contents()
	if err != nil {
		return tpm2.TPM2BName{}, false, fmt.Errorf("read public area of nv index 0x%08x: %w", uint32(want.NVIndex), err)
	}
	written = got.Attributes.Written
	cmp := *got
	cmp.Attributes.Written = false
	if !bytes.Equal(tpm2.Marshal(&cmp), tpm2.Marshal(&want)) {
		return tpm2.TPM2BName{}, false, fmt.Errorf("%w: index 0x%08x has type %d, attributes 0x%08x, name algorithm 0x%x, %d bytes and a %d-byte policy; want type %d, attributes 0x%08x, name algorithm 0x%x, %d bytes and no policy",
			ErrNVIndexMismatch, uint32(want.NVIndex),
			got.Attributes.NT, binary.BigEndian.Uint32(tpm2.Marshal(cmp.Attributes)), got.NameAlg, got.DataSize, len(got.AuthPolicy.Buffer),
			want.Attributes.NT, binary.BigEndian.Uint32(tpm2.Marshal(want.Attributes)), want.NameAlg, want.DataSize)
	}
	return rp.NVName, written, nil
}

// UndefineNV deletes the NV index at index with the owner's (empty)
// authorisation (TPM2_NV_UndefineSpace, Part 3, section 31.4). It is what a
// host can do to any index this package defines; the guest itself needs it
// only to retire an index.
func UndefineNV(t transport.TPM, index tpm2.TPMHandle) error {
	if err := checkNVIndex(index); err != nil {
		return err
	}
	rp, err := (tpm2.NVReadPublic{NVIndex: index}).Execute(t)
	if err != nil {
		if errors.Is(err, tpm2.TPMRCHandle) {
			return fmt.Errorf("undefine nv index: %w: 0x%08x", ErrNVIndexMissing, uint32(index))
		}
		return fmt.Errorf("undefine nv index 0x%08x: %w", uint32(index), err)
	}
	_, err = (tpm2.NVUndefineSpace{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    tpm2.NamedHandle{Handle: index, Name: rp.NVName},
	}).Execute(t)
	if err != nil {
		return fmt.Errorf("undefine nv index 0x%08x: %w", uint32(index), err)
	}
	return nil
}

// DefineCounter defines a monotonic counter for roll-back protection at
// index, an NV index handle (0x01000000..0x01ffffff; the owner's range in
// the TCG handle registry is 0x01800000..0x01bfffff), with the public area
// [CounterPublic] (TPM2_NV_DefineSpace, Part 3, section 31.3; NV memory:
// Part 1, section 37). A new counter has no value until its first
// [IncrementCounter]. An index already there gives [ErrNVIndexExists].
//
// # Attributes
//
// The counter is a TPM_NT_COUNTER index in the owner hierarchy with
// these attributes (Part 2, section 13.4):
//
//   - TPMA_NV_AUTHWRITE and TPMA_NV_AUTHREAD with an empty authValue and no
//     authPolicy: the guest increments and reads the counter without any
//     secret, because there is no secret the guest could keep from a host
//     that runs its vTPM outside the TEE anyway. Anyone who may send commands
//     to the TPM can therefore move the counter forward; nobody can move it
//     back (TPM2_NV_Increment is the only write a counter accepts, Part 3,
//     section 31.8).
//   - TPMA_NV_NO_DA: a wrong (non-empty) password must not push the TPM
//     towards dictionary-attack lockout.
//   - not TPMA_NV_ORDERLY: every increment reaches NV before the command
//     returns, so a value the guest has reported is never lost by a power
//     cut. An orderly counter keeps its low bits in RAM and, after a
//     non-orderly shutdown, jumps forward to the next multiple of the TPM's
//     orderly interval (Part 1, section 37.7.2): still monotonic, but not
//     what a broker comparing values wants to explain.
//   - not TPMA_NV_POLICY_DELETE: that attribute makes TPM2_NV_UndefineSpace
//     fail and leaves TPM2_NV_UndefineSpaceSpecial (which needs the platform
//     authorisation, Part 3, section 31.5) as the only way to delete the
//     index, but TPM2_NV_DefineSpace accepts it only together with
//     TPMA_NV_PLATFORMCREATE, i.e. from the platform hierarchy (Part 3,
//     section 31.3.1: TPM_RC_ATTRIBUTES otherwise). swtpm enforces this
//     (tested). In a guest the platform hierarchy belongs to the firmware,
//     which disables it (phEnable CLEAR) before the OS runs; a vTPM's
//     platform hierarchy is under the host's control besides. So the guest
//     cannot create such an index, and the owner (whose authorisation is
//     empty in a confidential VM, as the host could reset it anyway) can
//     delete the counter with TPM2_NV_UndefineSpace.
//
// Deleting and re-creating the counter does not help an attacker, because
// of how the TPM initialises counters (Part 1, section 37.7.2 "NV
// Counters"; Part 2, section 13.4 TPM_NT_COUNTER; reference implementation
// NvDeleteIndex and TPM2_NV_Increment): when a counter index is deleted
// (TPM2_NV_UndefineSpace, or TPM2_Clear deleting the owner's indexes), the
// TPM records its value in a TPM-wide maxCounter if it is larger, and the
// first TPM2_NV_Increment of a new counter index starts from maxCounter, so
// the first value it shows is maxCounter+1. The tests check this on swtpm:
// a counter incremented to 5, deleted and re-created reads
// [ErrCounterUninitialised] until its first increment, which returns 6.
// Note that maxCounter only learns the value of deleted counters: a new
// counter defined while another one shows 100 starts from the largest value
// of counters deleted before, not from 100 (also tested), which does not
// matter here because a counter is only ever compared with itself.
//
// So whoever deletes and re-creates the counter at most makes it jump
// forward, and between the deletion and the first increment [ReadCounter]
// returns [ErrCounterUninitialised], which a guest that has counted before
// must treat as tampering. [ReadCounter] and [IncrementCounter] also check
// the index's public area (type, attributes, size, empty policy) so that an
// ordinary index the host defined at the same handle, whose contents it could
// write at will, is refused with [ErrNVIndexMismatch].
//
// What no TPM command can prevent is the host replacing the whole vTPM
// state (swtpm's state directory) by an older copy: roll-back protection
// against that needs the vTPM's state inside the TEE (an SVSM vTPM) or a
// second, remote, counter (the broker's epochs, DESIGN.md section 7).
//
// # Write endurance
//
// TPM NV memory is flash or EEPROM rated for roughly 100 000 to 1 000 000
// writes per cell. Counters are designed for frequent increments (Part 1,
// section 37.7.2; many TPMs keep a counter's high bits in NV and the low bits
// in RAM when TPMA_NV_ORDERLY is set, writing NV only every N increments),
// and a TPM may refuse NV writes that come too fast with TPM_RC_NV_RATE
// (Part 2, section 6.6). The boot flow increments the counter
// at most once per boot plus once per operator "epoch advance": at most a
// few thousand writes a year, far below any endurance rating, which is why
// the counter is not orderly.
func DefineCounter(t transport.TPM, index tpm2.TPMHandle) error {
	if err := defineNV(t, CounterPublic(index)); err != nil {
		return fmt.Errorf("define nv counter: %w", err)
	}
	return nil
}

// IncrementCounter adds one to the counter at index (TPM2_NV_Increment,
// Part 3, section 31.8) and returns the new value. The first increment of
// a counter returns one more than the largest value any deleted counter on
// this TPM had (see [DefineCounter]).
func IncrementCounter(t transport.TPM, index tpm2.TPMHandle) (uint64, error) {
	name, _, err := readNVPublic(t, CounterPublic(index))
	if err != nil {
		return 0, fmt.Errorf("increment nv counter: %w", err)
	}
	_, err = (tpm2.NVIncrement{
		AuthHandle: tpm2.AuthHandle{Handle: index, Name: name, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    tpm2.NamedHandle{Handle: index, Name: name},
	}).Execute(t)
	if err != nil {
		return 0, fmt.Errorf("increment nv counter 0x%08x: %w", uint32(index), err)
	}
	v, err := ReadCounter(t, index)
	if err != nil {
		return 0, fmt.Errorf("increment nv counter: %w", err)
	}
	return v, nil
}

// ReadCounter reads the counter at index (TPM2_NV_Read, Part 3, section
// 31.13; a counter is a big-endian uint64). A counter never incremented
// gives [ErrCounterUninitialised]; an index that is not a counter of
// [CounterPublic] gives [ErrNVIndexMismatch]; no index [ErrNVIndexMissing].
func ReadCounter(t transport.TPM, index tpm2.TPMHandle) (uint64, error) {
	b, err := readNV(t, CounterPublic(index))
	if err != nil {
		return 0, fmt.Errorf("read nv counter: %w", err)
	}
	return binary.BigEndian.Uint64(b), nil
}

// readNV checks the public area of the index against want and reads all of
// its data.
func readNV(t transport.TPM, want tpm2.TPMSNVPublic) ([]byte, error) {
	name, written, err := readNVPublic(t, want)
	if err != nil {
		return nil, err
	}
	if !written {
		return nil, fmt.Errorf("%w: index 0x%08x", ErrCounterUninitialised, uint32(want.NVIndex))
	}
	rsp, err := (tpm2.NVRead{
		AuthHandle: tpm2.AuthHandle{Handle: want.NVIndex, Name: name, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    tpm2.NamedHandle{Handle: want.NVIndex, Name: name},
		Size:       want.DataSize,
	}).Execute(t)
	if err != nil {
		if errors.Is(err, tpm2.TPMRCNVUninitialized) {
			return nil, fmt.Errorf("%w: index 0x%08x", ErrCounterUninitialised, uint32(want.NVIndex))
		}
		return nil, fmt.Errorf("read nv index 0x%08x: %w", uint32(want.NVIndex), err)
	}
	if len(rsp.Data.Buffer) != int(want.DataSize) {
		return nil, fmt.Errorf("read nv index 0x%08x: the tpm returned %d bytes, want %d", uint32(want.NVIndex), len(rsp.Data.Buffer), want.DataSize)
	}
	return rsp.Data.Buffer, nil
}

// DefineExtendIndex defines an extend index at index whose hash is bank's,
// with the public area [ExtendIndexPublic] (TPM2_NV_DefineSpace, Part 3,
// section 31.3). It reads as all zeros until its first extend.
//
// An extend index (TPM_NT_EXTEND, Part 2, section 13.4) is a PCR in NV memory
// that survives reboots, whose value only changes by TPM2_NV_Extend (Part 3,
// section 31.9): new = H(old ‖ data), with H the index's nameAlg and old all
// zeros before the first extend. go-tpm v0.9.8 has no TPM2_NV_Extend, so
// this package implements it ([NVExtend]).
func DefineExtendIndex(t transport.TPM, index tpm2.TPMHandle, bank Bank) error {
	pub, err := ExtendIndexPublic(index, bank)
	if err != nil {
		return fmt.Errorf("define nv extend index: %w", err)
	}
	if err := defineNV(t, pub); err != nil {
		return fmt.Errorf("define nv extend index: %w", err)
	}
	return nil
}

// ExtendNV extends data into the extend index at index of bank
// (TPM2_NV_Extend, Part 3, section 31.9): the index becomes H(old ‖ data),
// see [ExtendValue]. data is at most the TPM's MAX_NV_BUFFER_SIZE (1024
// bytes on swtpm), usually a digest.
func ExtendNV(t transport.TPM, index tpm2.TPMHandle, bank Bank, data []byte) error {
	pub, err := ExtendIndexPublic(index, bank)
	if err != nil {
		return fmt.Errorf("extend nv index: %w", err)
	}
	name, _, err := readNVPublic(t, pub)
	if err != nil {
		return fmt.Errorf("extend nv index: %w", err)
	}
	err = (NVExtend{
		AuthHandle: tpm2.AuthHandle{Handle: index, Name: name, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    tpm2.NamedHandle{Handle: index, Name: name},
		Data:       data,
	}).Execute(t)
	if err != nil {
		return fmt.Errorf("extend nv index 0x%08x: %w", uint32(index), err)
	}
	return nil
}

// ReadExtendIndex reads the extend index at index of bank (TPM2_NV_Read,
// Part 3, section 31.13). An index never extended reads as all zeros (the
// value the first extend starts from), although the TPM itself refuses to
// read it (TPM_RC_NV_UNINITIALIZED).
func ReadExtendIndex(t transport.TPM, index tpm2.TPMHandle, bank Bank) ([]byte, error) {
	pub, err := ExtendIndexPublic(index, bank)
	if err != nil {
		return nil, fmt.Errorf("read nv extend index: %w", err)
	}
	b, err := readNV(t, pub)
	if errors.Is(err, ErrCounterUninitialised) {
		return make([]byte, pub.DataSize), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read nv extend index: %w", err)
	}
	return b, nil
}

// NVExtend is the TPM2_NV_Extend command (Part 3, section 31.9; command
// code TPM_CC_NV_Extend, 0x00000136), which go-tpm v0.9.8 lacks. It
// follows go-tpm's command pattern (handles tagged as go-tpm tags them), but
// as go-tpm's generic executor is unexported, [NVExtend.Execute] marshals the
// command itself and runs the authorisation session through go-tpm's
// exported [tpm2.Session] interface, so any session go-tpm offers (password,
// HMAC, policy) works.
type NVExtend struct {
	// AuthHandle is the index itself (TPMA_NV_AUTHWRITE/POLICYWRITE) or the
	// owner or platform (OWNERWRITE/PPWRITE), with its session.
	AuthHandle tpm2.AuthHandle `gotpm:"handle,auth"`
	// NVIndex is the extend index, with its Name.
	NVIndex tpm2.NamedHandle `gotpm:"handle"`
	// Data is extended into the index (a TPM2B_MAX_NV_BUFFER).
	Data []byte
}

// Command returns TPM_CC_NV_Extend.
func (NVExtend) Command() tpm2.TPMCC { return tpm2.TPMCCNVExtend }

// Execute sends the command (see [nvWrite]); the parameter is a
// TPM2B_MAX_NV_BUFFER, which a decrypting session may encrypt.
func (cmd NVExtend) Execute(t transport.TPM) error {
	param := tpm2.Marshal(tpm2.TPM2BMaxNVBuffer{Buffer: bytes.Clone(cmd.Data)})
	return nvWrite(t, cmd.Command(), cmd.AuthHandle, cmd.NVIndex, param, true)
}

// nvWrite sends an NV command go-tpm lacks whose handles are an
// authorisation handle and an NV index and whose response has no
// parameters: header (TPM_ST_SESSIONS), the two handles, the authorisation
// area, the parameters (Part 1, section 18), then it checks the response
// code and the session's response authorisation. param2B says the first
// parameter is a TPM2B (Part 1, section 21.2: only then may a session
// encrypt it).
func nvWrite(t transport.TPM, cc tpm2.TPMCC, ah tpm2.AuthHandle, index tpm2.NamedHandle, param []byte, param2B bool) error {
	sess := ah.Auth
	if sess == nil {
		sess = tpm2.PasswordAuth(nil)
	}
	if err := sess.Init(t); err != nil {
		return fmt.Errorf("initialise session: %w", err)
	}
	if err := sess.NewNonceCaller(); err != nil {
		return fmt.Errorf("initialise session: %w", err)
	}
	authName := ah.KnownName()
	if authName == nil {
		return fmt.Errorf("command 0x%x: the authorisation handle needs a name", uint32(cc))
	}
	names := []tpm2.TPM2BName{*authName, index.Name}
	if sess.IsDecryption() {
		if !param2B {
			return fmt.Errorf("command 0x%x: its parameter cannot be encrypted", uint32(cc))
		}
		if err := sess.Encrypt(param[2:]); err != nil {
			return fmt.Errorf("encrypt parameter: %w", err)
		}
	}
	auth, err := sess.Authorize(cc, param, nil, names, 0)
	if err != nil {
		return fmt.Errorf("authorise: %w", err)
	}
	authArea := tpm2.Marshal(auth)
	var b []byte
	b = binary.BigEndian.AppendUint16(b, uint16(tpm2.TPMSTSessions))
	b = binary.BigEndian.AppendUint32(b, 0) // size, set below
	b = binary.BigEndian.AppendUint32(b, uint32(cc))
	b = binary.BigEndian.AppendUint32(b, uint32(ah.Handle))
	b = binary.BigEndian.AppendUint32(b, uint32(index.Handle))
	b = binary.BigEndian.AppendUint32(b, uint32(len(authArea)))
	b = append(b, authArea...)
	b = append(b, param...)
	binary.BigEndian.PutUint32(b[2:], uint32(len(b)))

	rsp, err := t.Send(b)
	if err != nil {
		sess.CleanupFailure(t)
		return err
	}
	if len(rsp) < 10 {
		sess.CleanupFailure(t)
		return fmt.Errorf("command 0x%x: response of %d bytes", uint32(cc), len(rsp))
	}
	if rc := tpm2.TPMRC(binary.BigEndian.Uint32(rsp[6:])); rc != tpm2.TPMRCSuccess {
		sess.CleanupFailure(t)
		return rc
	}
	if binary.BigEndian.Uint32(rsp[2:]) != uint32(len(rsp)) || len(rsp) < 14 {
		return fmt.Errorf("command 0x%x: malformed response of %d bytes", uint32(cc), len(rsp))
	}
	r := rsp[10:]
	n := binary.BigEndian.Uint32(r)
	r = r[4:]
	if n > uint32(len(r)) {
		return fmt.Errorf("command 0x%x: response parameter area of %d bytes overruns the response", uint32(cc), n)
	}
	parms, r := r[:n], r[n:]
	ra, err := tpm2.Unmarshal[tpm2.TPMSAuthResponse](r)
	if err != nil {
		return fmt.Errorf("command 0x%x: response authorisation: %w", uint32(cc), err)
	}
	if err := sess.Validate(tpm2.TPMRCSuccess, cc, parms, names, 0, ra); err != nil {
		return fmt.Errorf("command 0x%x: validate response: %w", uint32(cc), err)
	}
	return nil
}
