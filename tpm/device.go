package tpm

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"
)

// DefaultDevice is the kernel's TPM resource manager, the device every
// command uses unless told otherwise.
const DefaultDevice = "/dev/tpmrm0"

// Device names a TPM: a character device (/dev/tpmrm0, /dev/tpm0) or an
// swtpm server socket.
type Device struct {
	// Path is the device node or the swtpm data socket.
	Path string
	// SWTPM is set for an swtpm unix socket ("swtpm:PATH").
	SWTPM bool
}

// String renders d in the form [ParseDevice] reads.
func (d Device) String() string {
	if d.SWTPM {
		return "swtpm:" + d.Path
	}
	return d.Path
}

// ParseDevice reads the value of a --tpm option: "" (the default,
// /dev/tpmrm0), a device path such as /dev/tpmrm0 or /dev/tpm0, or
// "swtpm:PATH" for swtpm's unix data socket. systemd's
// "swtpm:path=PATH" spelling (--tpm2-device=) is accepted too.
func ParseDevice(s string) (Device, error) {
	switch {
	case s == "":
		return Device{Path: DefaultDevice}, nil
	case strings.HasPrefix(s, "swtpm:"):
		p := strings.TrimPrefix(strings.TrimPrefix(s, "swtpm:"), "path=")
		if p == "" {
			return Device{}, errors.New("tpm device \"swtpm:\" needs a socket path, as in swtpm:/run/swtpm/tpm.sock")
		}
		return Device{Path: p, SWTPM: true}, nil
	case strings.HasPrefix(s, "/"):
		return Device{Path: s}, nil
	}
	return Device{}, fmt.Errorf("tpm device %q: want a device path such as /dev/tpmrm0 or swtpm:PATH", s)
}

// Open connects to d. For a character device the kernel resource manager
// (/dev/tpmrm0) is the right choice; /dev/tpm0 works only when nothing else
// uses the TPM.
func Open(d Device) (transport.TPMCloser, error) {
	if d.SWTPM {
		t, err := linuxudstpm.Open(d.Path)
		if err != nil {
			return nil, fmt.Errorf("open swtpm socket %s: %w", d.Path, err)
		}
		return t, nil
	}
	t, err := linuxtpm.Open(d.Path)
	if err != nil {
		return nil, fmt.Errorf("open tpm %s: %w", d.Path, err)
	}
	return t, nil
}
