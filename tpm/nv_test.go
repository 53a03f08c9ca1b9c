package tpm

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-tpm/tpm2"

	"github.com/confidisk/confidisk/tpm/tpmtest"
)

const (
	testCounter tpm2.TPMHandle = 0x01800100
	testExtend  tpm2.TPMHandle = 0x01800200
)

func TestCounterDefineIncrementRead(t *testing.T) {
	sw := tpmtest.Start(t)
	tp := sw.Open()
	if _, err := ReadCounter(tp, testCounter); !errors.Is(err, ErrNVIndexMissing) {
		t.Fatalf("read before define: %v, want ErrNVIndexMissing", err)
	}
	if err := DefineCounter(tp, testCounter); err != nil {
		t.Fatal(err)
	}
	if err := DefineCounter(tp, testCounter); !errors.Is(err, ErrNVIndexExists) {
		t.Fatalf("second define: %v, want ErrNVIndexExists", err)
	}
	if _, err := ReadCounter(tp, testCounter); !errors.Is(err, ErrCounterUninitialised) {
		t.Fatalf("read before increment: %v, want ErrCounterUninitialised", err)
	}
	var got []uint64
	for range 3 {
		v, err := IncrementCounter(tp, testCounter)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	if diff := cmp.Diff([]uint64{1, 2, 3}, got); diff != "" {
		t.Fatalf("increments (-want +got):\n%s", diff)
	}
	sw.Reboot()
	tp = sw.Open()
	if v, err := ReadCounter(tp, testCounter); err != nil || v != 3 {
		t.Fatalf("after reboot: %d, %v; want 3", v, err)
	}
}

// TestCounterRecreationNeverGoesBack checks on swtpm what DefineCounter's
// documentation states: a deleted and re-defined counter is uninitialised
// until its first increment, which continues above the deleted counter's
// value; and a counter defined while another one lives does not start above
// the live one (maxCounter only learns values of deleted counters).
func TestCounterRecreationNeverGoesBack(t *testing.T) {
	sw := tpmtest.Start(t)
	tp := sw.Open()
	if err := DefineCounter(tp, testCounter); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := IncrementCounter(tp, testCounter); err != nil {
			t.Fatal(err)
		}
	}
	if err := UndefineNV(tp, testCounter); err != nil {
		t.Fatal(err)
	}
	if err := DefineCounter(tp, testCounter); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadCounter(tp, testCounter); !errors.Is(err, ErrCounterUninitialised) {
		t.Fatalf("re-created counter before increment: %v, want ErrCounterUninitialised", err)
	}
	v, err := IncrementCounter(tp, testCounter)
	if err != nil {
		t.Fatal(err)
	}
	if v != 6 {
		t.Fatalf("re-created counter's first increment = %d, want 6 (5 before deletion)", v)
	}

	// A second counter, defined while the first one lives at 6 and after a
	// counter at 5 was deleted, starts above 5 only.
	other := testCounter + 1
	for range 94 {
		if _, err := IncrementCounter(tp, testCounter); err != nil {
			t.Fatal(err)
		}
	}
	if err := DefineCounter(tp, other); err != nil {
		t.Fatal(err)
	}
	if v, err := IncrementCounter(tp, other); err != nil || v != 6 {
		t.Fatalf("counter defined while another shows 100: first increment = %d, %v; want 6", v, err)
	}

	// Deleting the one at 100 raises the floor for every later counter,
	// across a reboot.
	if err := UndefineNV(tp, testCounter); err != nil {
		t.Fatal(err)
	}
	sw.Reboot()
	tp = sw.Open()
	if err := DefineCounter(tp, testCounter); err != nil {
		t.Fatal(err)
	}
	if v, err := IncrementCounter(tp, testCounter); err != nil || v != 101 {
		t.Fatalf("after deleting a counter at 100 and rebooting: first increment = %d, %v; want 101", v, err)
	}
}

// TestCounterPolicyDeleteNeedsPlatform checks that the owner cannot define
// a counter with TPMA_NV_POLICY_DELETE (Part 3, section 31.3.1), which is why
// DefineCounter does not use it.
func TestCounterPolicyDeleteNeedsPlatform(t *testing.T) {
	tp := tpmtest.Start(t).Open()
	pub := CounterPublic(testCounter)
	pub.Attributes.PolicyDelete = true
	_, err := (tpm2.NVDefineSpace{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		PublicInfo: tpm2.New2B(pub),
	}).Execute(tp)
	if !errors.Is(err, tpm2.TPMRCAttributes) {
		t.Fatalf("owner define with POLICY_DELETE: %v, want TPM_RC_ATTRIBUTES", err)
	}
}

func TestCounterRefusesForeignIndex(t *testing.T) {
	tp := tpmtest.Start(t).Open()
	// An ordinary 8-byte index the host could write at will.
	pub := tpm2.TPMSNVPublic{
		NVIndex: testCounter, NameAlg: tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{NT: tpm2.TPMNTOrdinary, AuthWrite: true, AuthRead: true, NoDA: true},
		DataSize:   8,
	}
	if err := defineNV(tp, pub); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadCounter(tp, testCounter); !errors.Is(err, ErrNVIndexMismatch) {
		t.Fatalf("read of an ordinary index: %v, want ErrNVIndexMismatch", err)
	}
	if _, err := IncrementCounter(tp, testCounter); !errors.Is(err, ErrNVIndexMismatch) {
		t.Fatalf("increment of an ordinary index: %v, want ErrNVIndexMismatch", err)
	}
}

func TestNVBadIndex(t *testing.T) {
	tp := tpmtest.Start(t).Open()
	for _, h := range []tpm2.TPMHandle{0, 0x81000001, 0x02000000} {
		if err := DefineCounter(tp, h); err == nil {
			t.Errorf("DefineCounter(0x%08x) succeeded", uint32(h))
		}
	}
}

func TestNVExtendIndex(t *testing.T) {
	sw := tpmtest.Start(t)
	tp := sw.Open()
	for _, bank := range []Bank{SHA256, SHA384} {
		index := testExtend
		if bank == SHA384 {
			index++
		}
		if err := DefineExtendIndex(tp, index, bank); err != nil {
			t.Fatal(err)
		}
		h, _ := bank.Hash()
		want := make([]byte, h.Size())
		got, err := ReadExtendIndex(tp, index, bank)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: fresh extend index reads %x, want zeros", bank, got)
		}
		for _, data := range [][]byte{[]byte("volume a"), bytes.Repeat([]byte{0xaa}, 64), {0}} {
			if err := ExtendNV(tp, index, bank, data); err != nil {
				t.Fatal(err)
			}
			x := h.New()
			x.Write(want)
			x.Write(data)
			want = x.Sum(nil)
			got, err := ReadExtendIndex(tp, index, bank)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s: after extending %q: %x, want H(old ‖ data) = %x", bank, data, got, want)
			}
		}
		sw.Reboot()
		tp = sw.Open()
		if got, err := ReadExtendIndex(tp, index, bank); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: after reboot: %x, %v; want %x", bank, got, err, want)
		}
	}
	// The wrong bank for an index is refused before anything is sent.
	if err := ExtendNV(tp, testExtend, SHA384, []byte("x")); !errors.Is(err, ErrNVIndexMismatch) {
		t.Fatalf("extend with the wrong bank: %v, want ErrNVIndexMismatch", err)
	}
	// A counter is not an extend index.
	if err := DefineCounter(tp, testCounter); err != nil {
		t.Fatal(err)
	}
	if err := ExtendNV(tp, testCounter, SHA256, []byte("x")); !errors.Is(err, ErrNVIndexMismatch) {
		t.Fatalf("extend of a counter: %v, want ErrNVIndexMismatch", err)
	}
}

// TestNVExtendHMACSession runs NVExtend in a salted HMAC session with
// parameter encryption, checking that the hand-written command handles
// go-tpm sessions and not only passwords.
func TestNVExtendHMACSession(t *testing.T) {
	tp := tpmtest.Start(t).Open()
	if err := DefineExtendIndex(tp, testExtend, SHA256); err != nil {
		t.Fatal(err)
	}
	srk, _, err := GetOrCreateSRK(tp)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := ExtendIndexPublic(testExtend, SHA256)
	name, _, err := readNVPublic(tp, pub)
	if err != nil {
		t.Fatal(err)
	}
	data := sha256.Sum256([]byte("anchor"))
	err = (NVExtend{
		AuthHandle: tpm2.AuthHandle{Handle: testExtend, Name: name,
			Auth: tpm2.HMAC(tpm2.TPMAlgSHA256, 16, tpm2.Salted(srk.Handle, srk.Public), tpm2.AESEncryption(128, tpm2.EncryptIn))},
		NVIndex: tpm2.NamedHandle{Handle: testExtend, Name: name},
		Data:    data[:],
	}).Execute(tp)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := ExtendValue(SHA256, make([]byte, 32), data[:])
	if got, err := ReadExtendIndex(tp, testExtend, SHA256); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("after an hmac-session extend: %x, %v; want %x", got, err, want)
	}
}
