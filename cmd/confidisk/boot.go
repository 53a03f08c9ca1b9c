package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/confidisk/confidisk/provision"
)

func newBootCmd() *cobra.Command {
	var (
		cmdlineFile, configFile, mkfs, stopAt, measureLog, onFailure string
		asJSON, noSwitchRoot                                         bool
	)
	cmd := &cobra.Command{
		Use:   "boot",
		Short: "The guest's boot flow, run from the initrd",
		Long: `Run the confidential guest's boot from the initrd:

  1. map the dm-verity root (roothash= on the kernel command line; the data
     and hash partitions are found by their Discoverable Partitions type and
     the UUIDs derived from the root hash) and mount it read-only;
  2. on first boot (the partition labelled "state" is blank): format it as
     LUKS2 with integrity with a key from the kernel RNG, seal the key to the
     vTPM (policy: confidisk.tpm2-pcrs, plus PCR 15 at zero), store its
     fixation digest in the vTPM, and seal a recovery passphrase to the
     operator's recovery key (confidisk.recovery-key=; never printed);
     on later boots: refuse a header below the floor (null/ECB ciphers, no
     integrity), unseal, check the fixation digest (a swapped volume is
     refused), verify the authenticated metadata and the provisioned
     settings (a weaker command line is refused), open;
  3. check the volume's freshness epoch against its anchors (the vTPM counter
     and, with confidisk.broker=URL, the broker): an older copy is refused;
     advance it;
  4. measure the volume key into PCR 15 as systemd-cryptsetup does; with a
     broker, register the creation record (first boot) and advance the
     broker's epoch with fresh evidence;
  5. mount the read-write root (overlay over the verity root, a copy, a
     dm-clone of it, or a new root with the verity /usr) at confidisk.root
     (/sysroot) and switch to it, or, with --no-switch-root (a systemd
     initrd's confidisk-boot.service), exit and let systemd switch root.

Every provisioning step is recorded in the volume's header, so a power cut
leads the next boot to finish or restart provisioning; a provisioned volume is
never reformatted. Configuration: kernel command line and --config (see
docs/boot.md).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if onFailure != "exit" && onFailure != "poweroff" {
				return usageError{fmt.Errorf("--on-failure %q: want exit or poweroff", onFailure)}
			}
			err := runBoot(cmd, bootFlags{cmdlineFile, configFile, mkfs, stopAt, measureLog, asJSON, noSwitchRoot})
			if err != nil && onFailure == "poweroff" {
				powerOff(cmd, err)
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cmdlineFile, "cmdline", "/proc/cmdline", "kernel command line to read")
	fl.StringVar(&configFile, "config", "/etc/confidisk/boot.conf", "config file (key=value lines; optional)")
	fl.StringVar(&mkfs, "mkfs", "", "mkfs.ext4 program (default: from PATH)")
	fl.StringVar(&measureLog, "measure-log", "", "systemd's userspace measurement log (default /run/log/systemd/tpm2-measure.log)")
	fl.StringVar(&stopAt, "stop-at", "", "testing: print POINT NAME and wait forever on reaching NAME (a provisioning step, unlocked, measured, clone-removed or mounted)")
	fl.StringVar(&onFailure, "on-failure", "exit", "what a refused or failed boot does: exit (status 1) or poweroff (print the reason, sync, power the machine off: what an initrd's /init asks for, never a shell on the host's console)")
	fl.BoolVar(&asJSON, "json", false, "print what the boot did as JSON")
	fl.BoolVar(&noSwitchRoot, "no-switch-root", false, "stop after mounting the root, whatever confidisk.switch-root= says: a systemd initrd switches root itself (dist/dracut/90confidisk/confidisk-boot.service)")
	return cmd
}

// bootFlags are the flags of `confidisk boot` that runBoot reads.
type bootFlags struct {
	cmdlineFile, configFile, mkfs, stopAt, measureLog string
	asJSON, noSwitchRoot                              bool
}

// powerOff reports why the boot failed and powers the machine off.
func powerOff(cmd *cobra.Command, why error) {
	fmt.Fprintf(cmd.ErrOrStderr(), "confidisk boot: %v\nconfidisk boot: refusing to continue: powering off\n", why)
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "confidisk boot: power off: %v\n", err)
	}
}

// runBoot is `confidisk boot` with its flags.
func runBoot(cmd *cobra.Command, f bootFlags) error {
	cfg := provision.DefaultConfig()
	if b, err := os.ReadFile(f.configFile); err == nil {
		if err := cfg.ApplyFile(b); err != nil {
			return fmt.Errorf("%s: %w", f.configFile, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) || cmd.Flags().Changed("config") {
		return err
	}
	cl, err := os.ReadFile(f.cmdlineFile)
	if err != nil {
		return err
	}
	if err := cfg.ApplyCmdline(string(cl)); err != nil {
		return err
	}
	log := cmd.ErrOrStderr()
	start := time.Now()
	res, err := provision.Boot(cmd.Context(), provision.Options{
		Config: cfg, Log: log, Mkfs: f.mkfs, MeasureLog: f.measureLog,
		Checkpoint: func(p string) {
			fmt.Fprintf(log, "confidisk boot: reached %s after %.1fs\n", p, time.Since(start).Seconds())
			if p == f.stopAt {
				unix.Sync()
				fmt.Fprintf(cmd.OutOrStdout(), "POINT %s\n", p)
				for { // wait here for the power cut (select{} would be a detected deadlock)
					time.Sleep(time.Hour)
				}
			}
		},
	})
	if err != nil {
		return err
	}
	if f.asJSON {
		if err := writeJSON(cmd.OutOrStdout(), res); err != nil {
			return err
		}
	}
	if !cfg.SwitchRoot || f.noSwitchRoot {
		return nil
	}
	if os.Getpid() != 1 {
		return errors.New("not PID 1: switch_root is only possible as the initrd's init (set confidisk.switch-root=0 to stop after mounting)")
	}
	return provision.SwitchRoot(cfg.Root, cfg.Init)
}
