//go:build !confidisk_guest

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"

	"github.com/confidisk/confidisk/broker/api"
	"github.com/confidisk/confidisk/broker/brokertest"
	"github.com/confidisk/confidisk/broker/client"
)

// TestRequireFlags builds the required measurements from the flags; want
// is the JSON, or the start of the error after "ERR ".
func TestRequireFlags(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	h64 := strings.Repeat("ab", 32)
	base := file("base.json", `{"pcrs":{"4":"`+strings.Repeat("44", 32)+`"},"tee":"sev-snp:verified","x":[1]}`)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"nothing", nil, ""},
		{"pcrs lowercased", []string{"--require-pcr", "7=" + strings.ToUpper(h64), "--require-pcr", "11=" + h64},
			`{"pcrs":{"11":"` + h64 + `","7":"` + h64 + `"}}`},
		{"ak, root hash, tee", []string{"--require-ak", strings.ToUpper(h64), "--require-root-hash", "BEEF", "--require-tee", "tdx:verified"},
			`{"ak":"` + h64 + `","root_hash":"verified:beef","tee":"tdx:verified"}`},
		{"root hash given with its prefix", []string{"--require-root-hash", "verified:beef"}, `{"root_hash":"verified:beef"}`},
		{"file extended", []string{"--require", base, "--require-pcr", "7=" + h64},
			`{"pcrs":{"4":"` + strings.Repeat("44", 32) + `","7":"` + h64 + `"},"tee":"sev-snp:verified","x":[1]}`},
		{"file agreeing with a flag", []string{"--require", base, "--require-tee", "sev-snp:verified"},
			`{"pcrs":{"4":"` + strings.Repeat("44", 32) + `"},"tee":"sev-snp:verified","x":[1]}`},
		{"empty file object", []string{"--require", file("empty.json", " {} ")}, ""},
		{"same pcr twice, same value", []string{"--require-pcr", "7=" + h64, "--require-pcr", "7=" + strings.ToUpper(h64)}, `{"pcrs":{"7":"` + h64 + `"}}`},

		{"file disagreeing", []string{"--require", base, "--require-tee", "tdx:verified"}, `ERR --require-tee: "tee" is already required to be "sev-snp:verified"`},
		{"same pcr twice, two values", []string{"--require-pcr", "7=" + h64, "--require-pcr", "7=" + strings.Repeat("cd", 32)}, `ERR --require-pcr 7=cdcd`},
		{"file pcrs not an object", []string{"--require", file("pcrs.json", `{"pcrs":[7]}`), "--require-pcr", "7=" + h64}, `ERR --require-pcr: the "pcrs" of --require`},
		{"file not an object", []string{"--require", file("array.json", `[1]`)}, "ERR --require " + dir},
		{"file malformed", []string{"--require", file("bad.json", `{"a":`)}, "ERR --require " + dir},
		{"file missing", []string{"--require", filepath.Join(dir, "none")}, "ERR --require: open"},
		{"pcr index too large", []string{"--require-pcr", "24=" + h64}, `ERR --require-pcr "24=`},
		{"pcr index not a number", []string{"--require-pcr", "x=" + h64}, `ERR --require-pcr "x=`},
		{"pcr index with a sign", []string{"--require-pcr", "+7=" + h64}, `ERR --require-pcr "+7=`},
		{"pcr without a value", []string{"--require-pcr", "7"}, `ERR --require-pcr "7"`},
		{"pcr value not hex", []string{"--require-pcr", "7=xyz"}, "ERR --require-pcr 7=xyz: not hex"},
		{"pcr value of no bank", []string{"--require-pcr", "7=abcd"}, "ERR --require-pcr 7=abcd: a PCR value is 40, 64, 96 or 128 hex digits"},
		{"ak too short", []string{"--require-ak", "abcd"}, "ERR --require-ak: the attestation key fingerprint is 64 hex digits"},
		{"ak with a prefix", []string{"--require-ak", "sha256:" + h64}, "ERR --require-ak: not hex"},
		{"root hash not hex", []string{"--require-root-hash", "zz"}, "ERR --require-root-hash: not hex"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r requireFlags
			fl := pflag.NewFlagSet("test", pflag.ContinueOnError)
			r.register(fl)
			if err := fl.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			if got := r.set(); got != (len(tc.args) > 0) {
				t.Errorf("set() = %v with %q", got, tc.args)
			}
			obj, err := r.object()
			got := string(obj)
			if err != nil {
				got = "ERR " + err.Error()
			}
			if want, isErr := strings.CutPrefix(tc.want, "ERR "); isErr {
				if !strings.HasPrefix(got, tc.want) {
					t.Errorf("got %q, want an error starting with %q", got, want)
				}
				if _, ok := err.(usageError); !ok && !strings.Contains(tc.name, "missing") {
					t.Errorf("error %T, want a usageError", err)
				}
				return
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
			if tc.want == "" && obj != nil {
				t.Errorf("object %q, want nil", obj)
			}
		})
	}
}

// TestBrokerPutKeyRequire stores a key with `broker put-key --require-*`
// and checks that the broker releases it only to evidence that shows them.
func TestBrokerPutKeyRequire(t *testing.T) {
	data := t.TempDir()
	l, err := brokertest.StartLocal(data, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cli := func(args ...string) (string, error) {
		out, _, err := runIn(t, "", append([]string{"broker", "--url", l.URL, "--data", data}, args...)...)
		return out, err
	}
	const uuid = "6a1c9e0e-4f4b-4b7a-9d61-3a2b1c0d9e8f"
	if _, err := cli("register", "--uuid", uuid, "--key-id", "abcd"); err != nil {
		t.Fatalf("register: %v", err)
	}
	keyFile := filepath.Join(t.TempDir(), "key")
	key := strings.Repeat("k", 32)
	os.WriteFile(keyFile, []byte(key), 0o600)
	pcr7 := strings.Repeat("3f", 32)
	reqFile := filepath.Join(t.TempDir(), "require.json")
	os.WriteFile(reqFile, []byte(`{"firmware_log":"verified:0,7"}`), 0o600)
	out, err := cli("put-key", uuid, "--key-id", "abcd", "--key-file", keyFile, "--require", reqFile,
		"--require-pcr", "7="+strings.ToUpper(pcr7), "--require-tee", "sev-snp:verified")
	want := `{"firmware_log":"verified:0,7","pcrs":{"7":"` + pcr7 + `"},"tee":"sev-snp:verified"}`
	if err != nil || !strings.Contains(out, "stored (32 bytes)") || !strings.Contains(out, "released only to evidence showing "+want) {
		t.Fatalf("put-key: %q %v", out, err)
	}
	if _, err := cli("put-key", uuid, "--key-id", "abcd", "--key-file", keyFile, "--require-pcr", "7=zz"); err == nil || !strings.Contains(err.Error(), "not hex") {
		t.Errorf("put-key with a bad --require-pcr: %v", err)
	}
	if out, err := cli("put-key", "--help"); err != nil || !strings.Contains(out, "requires PCR 7 and says nothing of") || !strings.Contains(out, "--require-pcr") {
		t.Errorf("put-key --help: %q %v", out, err)
	}

	tlsCfg, err := client.TLSConfig(l.TLS.ServerCert, "", "")
	if err != nil {
		t.Fatal(err)
	}
	guest, err := client.New(l.URL, client.Options{TLS: tlsCfg})
	if err != nil {
		t.Fatal(err)
	}
	defer guest.Close()
	priv, err := api.NewReleaseKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, measurements, wantCode string
	}{
		{"shown", `{"pcrs":{"7":"` + pcr7 + `","11":"00"},"tee":"sev-snp:verified","firmware_log":"verified:0,7","ak":"x"}`, ""},
		{"another pcr 7", `{"pcrs":{"7":"00"},"tee":"sev-snp:verified","firmware_log":"verified:0,7"}`, "measurements_mismatch"},
		{"no tee", `{"pcrs":{"7":"` + pcr7 + `"},"tee":"none","firmware_log":"verified:0,7"}`, "measurements_mismatch"},
	} {
		nr, err := guest.Nonce(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		ev, err := brokertest.Evidence{Nonce: nr.Nonce, Measurements: json.RawMessage(tc.measurements), ReleaseKey: priv.PublicKey().Bytes()}.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		rk, err := guest.ReleaseKey(t.Context(), uuid, nr.Nonce, ev)
		if tc.wantCode != "" {
			if !client.IsCode(err, tc.wantCode) {
				t.Errorf("%s: %v, want %s", tc.name, err, tc.wantCode)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got, err := api.OpenKey(priv, uuid, *rk); err != nil || string(got) != key {
			t.Errorf("%s: released %q, %v", tc.name, got, err)
		}
	}
}
