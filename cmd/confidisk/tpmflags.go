package main

import (
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/spf13/pflag"

	"github.com/confidisk/confidisk/tpm"
)

// tpmFlags is the one definition of --tpm (which TPM) and, for commands
// that read, seal to or quote PCRs, --bank and --pcrs.
type tpmFlags struct {
	dev, bank, pcrs string
}

// registerDevice adds --tpm.
func (f *tpmFlags) registerDevice(fs *pflag.FlagSet) {
	fs.StringVar(&f.dev, "tpm", tpm.DefaultDevice, "TPM device, or swtpm:PATH")
}

// register adds --tpm, --bank and --pcrs (described by pcrsHelp).
func (f *tpmFlags) register(fs *pflag.FlagSet, pcrsHelp string) {
	f.registerDevice(fs)
	fs.StringVar(&f.bank, "bank", "sha256", "PCR bank")
	fs.StringVar(&f.pcrs, "pcrs", "", pcrsHelp)
}

// open opens the TPM --tpm names.
func (f *tpmFlags) open() (transport.TPMCloser, error) { return openTPMFlag(f.dev) }

// selection parses --bank and --pcrs (nil for none given); bad values are
// usage errors.
func (f *tpmFlags) selection() (tpm.Bank, []int, error) {
	b, err := tpm.ParseBank(f.bank)
	if err != nil {
		return "", nil, usageError{err}
	}
	list, err := parsePCRList(f.pcrs)
	return b, list, err
}
