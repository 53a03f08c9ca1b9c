package provision

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// option applies the value of one confidisk.* option to c and returns why
// the value is refused ("" when it is taken). fromCmdline is true for the
// kernel command line, which is the host's unless a signed UKI carries it.
type option func(c *Config, value string, fromCmdline bool) string

// options are the confidisk.* options (docs/boot.md, "Configuration").
var options = map[string]option{
	"rw": func(c *Config, v string, _ bool) string {
		return oneOf(v, func(s string) { c.RW = RWMode(s) }, string(RWOverlay), string(RWCopy), string(RWNone), string(RWClone), string(RWUsrOverlay), string(RWUsr))
	},
	"clone-region-size": func(c *Config, v string, _ bool) string {
		n, err := parseSize(v)
		if err != nil || n < 4096 || n > 1<<30 || n&(n-1) != 0 {
			return "want a power of two from 4K to 1G"
		}
		c.Clone.RegionSize = n / 512
		return ""
	},
	"clone-hydration-threshold": func(c *Config, v string, _ bool) string {
		return count(v, &c.Clone.Threshold)
	},
	"clone-hydration-batch-size": func(c *Config, v string, _ bool) string {
		return count(v, &c.Clone.Batch)
	},
	"clone-hydration": func(c *Config, v string, _ bool) string {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return "want 0 or 1"
		}
		c.Clone.Hydrate = b
		return ""
	},
	"state": func(c *Config, v string, _ bool) string {
		if v == "" {
			return "empty label"
		}
		c.StateLabel = v
		return ""
	},
	"state-key": func(c *Config, v string, _ bool) string {
		return oneOf(v, func(s string) { c.StateKey = KeySource(s) }, string(KeySelf), string(KeyBroker), string(KeyBrokerAlways), string(KeySRK))
	},
	"tpm2-pcrs": func(c *Config, v string, _ bool) string {
		pcrs, err := parsePCRs(v)
		if err != nil {
			return err.Error()
		}
		c.PCRs = pcrs
		return ""
	},
	"tpm": func(c *Config, v string, _ bool) string { c.TPM = v; return "" },
	"integrity": func(c *Config, v string, _ bool) string {
		return oneOf(v, func(s string) { c.Integrity = s }, "hmac-sha256", "hmac-sha512", "aead")
	},
	"integrity-init": func(c *Config, v string, _ bool) string {
		return oneOf(v, func(s string) { c.FastInit = s == "fast" }, "fast", "full")
	},
	"sysroot": func(c *Config, v string, _ bool) string { return absolute(v, &c.Root) },
	"switch-root": func(c *Config, v string, _ bool) string {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return "want 0 or 1"
		}
		c.SwitchRoot = b
		return ""
	},
	"broker": func(c *Config, v string, _ bool) string {
		u, err := url.Parse(v)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return "want https://HOST[:PORT]"
		}
		c.Broker = v
		return ""
	},
	"broker-ca": func(c *Config, v string, _ bool) string { return absolute(v, &c.BrokerCA) },
	"tee": func(c *Config, v string, _ bool) string {
		return oneOf(v, func(s string) { c.TEE = s }, "auto", "none", "sev-snp", "tdx")
	},
	"rollback-anchor": func(c *Config, v string, _ bool) string {
		if why := oneOf(v, func(s string) { c.Anchor = s }, "tpm", "broker", "tpm+broker", "broker+tpm"); why != "" {
			return "want tpm, broker or tpm+broker"
		}
		return ""
	},
	"device-timeout": func(c *Config, v string, _ bool) string {
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil {
			return "want whole seconds (0 to 65535)"
		}
		c.DeviceTimeout = time.Duration(n) * time.Second
		return ""
	},
	"recovery-key": func(c *Config, v string, _ bool) string { return absolute(v, &c.RecoveryKey) },
	"recovery": func(c *Config, v string, fromCmdline bool) string {
		if v == "console" && fromCmdline {
			return "printing the recovery key on the console weakens the volume (the host reads a confidential VM's console): " +
				"it is taken only from the boot.conf inside the initrd"
		}
		return oneOf(v, func(s string) { c.RecoveryConsole = s == "console" }, "operator-key", "console")
	},
}

// oneOf calls set with v when it is one of allowed, else says what is.
func oneOf(v string, set func(string), allowed ...string) string {
	if !slices.Contains(allowed, v) {
		return fmt.Sprintf("want %s or %s", strings.Join(allowed[:len(allowed)-1], ", "), allowed[len(allowed)-1])
	}
	set(v)
	return ""
}

// count sets *dst to a region count from 1 to 65536.
func count(v string, dst *uint32) string {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n < 1 || n > 65536 {
		return "want a whole number of regions from 1 to 65536"
	}
	*dst = uint32(n)
	return ""
}

// parseSize reads a byte count with an optional K, M or G suffix (powers of
// 1024, as in systemd's size options).
func parseSize(v string) (uint64, error) {
	mult := uint64(1)
	if i := strings.IndexAny(v, "KMG"); i >= 0 && i == len(v)-1 {
		mult = map[byte]uint64{'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30}[v[i]]
		v = v[:i]
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n > (1<<62)/mult {
		return 0, fmt.Errorf("invalid size %q", v)
	}
	return n * mult, nil
}

// absolute sets *dst to an absolute path v.
func absolute(v string, dst *string) string {
	if !strings.HasPrefix(v, "/") {
		return "want an absolute path"
	}
	*dst = v
	return ""
}
