//go:build !confidisk_guest

package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
)

// requireHelp explains the --require flags, for the Long help of commands
// that register them.
const requireHelp = `The broker releases the key only to evidence that shows the required
measurements: every member of the JSON object must be in the measurements the
broker's verifier reports, with an equal value. Objects are compared member by
member, recursively: {"pcrs":{"7":"<hex>"}} requires PCR 7 and says nothing of
the other PCRs, nor of the members it does not name. Strings, numbers, booleans
and arrays must be equal (numbers by value; strings case-sensitively: the
verifier writes hex in lowercase, and the flags below lowercase it). The
verifier's measurements look like
  {"bank":"sha256","pcrs":{"7":"<hex>","11":"<hex>"},"ak":"<fingerprint>",
   "root_hash":"verified:<hex>","tee":"sev-snp:verified",...}
Where the values come from: the measurements of an accepted boot (confidisk
broker volume UUID shows those a guest's volume was registered with; POST
/v1/evidence answers them), and for an image, confidisk image build: the PCR
values of its --policy file (what a good boot measures) and the root hash it
prints (the evidence shows "verified:<hex>" only when the broker's policy lists
that root hash). The --require-* flags build the object, or extend the one in
--require FILE (and must agree with it). Without any, the broker's policy alone
decides.`

// requireFlags are the flags that build the measurements a key's release
// requires (api.PutKeyRequest.Require): --require FILE and the
// --require-pcr, --require-ak, --require-root-hash and --require-tee
// shorthands.
type requireFlags struct {
	file     string
	pcrs     []string
	ak       string
	rootHash string
	tee      string
}

// register adds the flags to fl.
func (r *requireFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&r.file, "require", "", `file holding the JSON object of measurements the release evidence must show (e.g. {"pcrs":{"7":"<hex>"},"tee":"sev-snp:verified"})`)
	fl.StringArrayVar(&r.pcrs, "require-pcr", nil, `require PCR N (0-23) to be HEX in the evidence's bank: N=HEX, repeatable (adds "pcrs":{"N":"hex"})`)
	fl.StringVar(&r.ak, "require-ak", "", `require the attestation key with this fingerprint (64 hex digits, the evidence's "ak")`)
	fl.StringVar(&r.rootHash, "require-root-hash", "", `require this verified dm-verity root hash (hex; adds "root_hash":"verified:<hex>")`)
	fl.StringVar(&r.tee, "require-tee", "", `require this TEE finding, e.g. sev-snp:verified or tdx:verified (adds "tee")`)
}

// set reports whether any of the flags was given.
func (r *requireFlags) set() bool {
	return r.file != "" || len(r.pcrs) > 0 || r.ak != "" || r.rootHash != "" || r.tee != ""
}

// object returns the required measurements as compact JSON (members sorted
// by name), or nil when nothing is required.
func (r *requireFlags) object() (json.RawMessage, error) {
	obj, err := r.base()
	if err != nil {
		return nil, err
	}
	if err := r.addPCRs(obj); err != nil {
		return nil, err
	}
	if err := r.addScalars(obj); err != nil {
		return nil, err
	}
	if len(obj) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("required measurements: %w", err)
	}
	return b, nil
}

// base is the object of --require FILE, or an empty one.
func (r *requireFlags) base() (map[string]json.RawMessage, error) {
	obj := map[string]json.RawMessage{}
	if r.file == "" {
		return obj, nil
	}
	b, err := os.ReadFile(r.file)
	if err != nil {
		return nil, fmt.Errorf("--require: %w", err)
	}
	if b = bytes.TrimSpace(b); len(b) == 0 || b[0] != '{' {
		return nil, usageError{fmt.Errorf("--require %s: want a JSON object of measurements, like {\"pcrs\":{\"7\":\"<hex>\"}}", r.file)}
	}
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, usageError{fmt.Errorf("--require %s: %w", r.file, err)}
	}
	return obj, nil
}

// addPCRs merges --require-pcr into obj["pcrs"].
func (r *requireFlags) addPCRs(obj map[string]json.RawMessage) error {
	if len(r.pcrs) == 0 {
		return nil
	}
	pcrs := map[string]json.RawMessage{}
	if raw, ok := obj["pcrs"]; ok {
		if err := json.Unmarshal(raw, &pcrs); err != nil || pcrs == nil {
			return usageError{fmt.Errorf("--require-pcr: the \"pcrs\" of --require %s is not an object", r.file)}
		}
	}
	for _, p := range r.pcrs {
		n, val, err := parsePCRValue(p)
		if err != nil {
			return err
		}
		if err := setString(pcrs, n, val, "--require-pcr "+p); err != nil {
			return err
		}
	}
	b, err := json.Marshal(pcrs)
	if err != nil {
		return fmt.Errorf("--require-pcr: %w", err)
	}
	obj["pcrs"] = b
	return nil
}

// addScalars sets "ak", "root_hash" and "tee" from their flags.
func (r *requireFlags) addScalars(obj map[string]json.RawMessage) error {
	if r.ak != "" {
		ak, err := lowerHex(r.ak, "--require-ak")
		if err != nil {
			return err
		}
		if len(ak) != 64 {
			return usageError{fmt.Errorf("--require-ak: the attestation key fingerprint is 64 hex digits (the SHA-256 of its TPMT_PUBLIC, as in the evidence's \"ak\"), not %d", len(ak))}
		}
		if err := setString(obj, "ak", ak, "--require-ak"); err != nil {
			return err
		}
	}
	if r.rootHash != "" {
		rh, err := lowerHex(strings.TrimPrefix(r.rootHash, "verified:"), "--require-root-hash")
		if err != nil {
			return err
		}
		if err := setString(obj, "root_hash", "verified:"+rh, "--require-root-hash"); err != nil {
			return err
		}
	}
	if r.tee != "" {
		if err := setString(obj, "tee", r.tee, "--require-tee"); err != nil {
			return err
		}
	}
	return nil
}

// parsePCRValue parses N=HEX of --require-pcr.
func parsePCRValue(s string) (string, string, error) {
	ns, hx, ok := strings.Cut(s, "=")
	n, err := strconv.Atoi(ns)
	if !ok || err != nil || n < 0 || n > 23 || ns != strconv.Itoa(n) {
		return "", "", usageError{fmt.Errorf("--require-pcr %q: want N=HEX with N a PCR index from 0 to 23", s)}
	}
	val, err := lowerHex(hx, "--require-pcr "+s)
	if err != nil {
		return "", "", err
	}
	switch len(val) {
	case 40, 64, 96, 128: // sha1, sha256, sha384, sha512
	default:
		return "", "", usageError{fmt.Errorf("--require-pcr %s: a PCR value is 40, 64, 96 or 128 hex digits (the bank's digest), not %d", s, len(val))}
	}
	return ns, val, nil
}

// lowerHex checks that s is hex and returns it in lowercase, as the
// verifier writes it.
func lowerHex(s, flag string) (string, error) {
	if s == "" {
		return "", usageError{fmt.Errorf("%s: empty hex value", flag)}
	}
	if _, err := hex.DecodeString(s); err != nil {
		return "", usageError{fmt.Errorf("%s: not hex: %w", flag, err)}
	}
	return strings.ToLower(s), nil
}

// setString sets obj[name] to the string val; a value already there (from
// --require FILE or an earlier flag) must be the same.
func setString(obj map[string]json.RawMessage, name, val, flag string) error {
	if old, ok := obj[name]; ok {
		var s string
		if err := json.Unmarshal(old, &s); err != nil || s != val {
			return usageError{fmt.Errorf("%s: %q is already required to be %s", flag, name, old)}
		}
	}
	b, err := json.Marshal(val)
	if err != nil {
		return fmt.Errorf("%s: %w", flag, err)
	}
	obj[name] = b
	return nil
}
