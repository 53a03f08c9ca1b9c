package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/confidisk/confidisk/activate"
	"github.com/confidisk/confidisk/dm"
)

func newVerityOpenCmd() *cobra.Command {
	var (
		f                                       treeFlags
		rootHashFile                            string
		ignoreCorr, restartCorr, panicCorr      bool
		ignoreZero, checkAtMostOnce, useTasklet bool
	)
	cmd := &cobra.Command{
		Use:   "open NAME DATA HASH [ROOTHASH]",
		Short: "Map a dm-verity device /dev/mapper/NAME (needs root and device-mapper)",
		Long: `Create the read-only device-mapper device /dev/mapper/NAME that checks every
read from DATA against the tree on HASH and ROOTHASH, with the same table that
veritysetup open builds. DATA and HASH may be block devices or image files
(these get read-only loop devices, released when the device is closed).

The root hash is checked against the top of the tree before anything is mapped,
and the first block is read through the new device; if either fails, nothing
stays mapped.`,
		Example: `  confidisk verity open root /dev/vda2 /dev/vda3 $(cat root.roothash)
  confidisk verity open --root-hash-file root.roothash root root.img root.verity
  mount -o ro /dev/mapper/root /mnt`,
		Args: rangeArgs(3, 4),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, dataPath, hashPath := args[0], args[1], args[2]
			modes := 0
			mode := activate.CorruptionEIO
			for _, m := range []struct {
				set  bool
				mode activate.CorruptionMode
			}{{ignoreCorr, activate.CorruptionIgnore}, {restartCorr, activate.CorruptionRestart}, {panicCorr, activate.CorruptionPanic}} {
				if m.set {
					modes++
					mode = m.mode
				}
			}
			if modes > 1 {
				return usageError{errors.New("give at most one of --ignore-corruption, --restart-on-corruption, --panic-on-corruption")}
			}
			data, hashDev, p, err := openTree(dataPath, hashPath, &f)
			if err != nil {
				return err
			}
			data.Close()
			hashDev.Close()
			root, err := rootHashArg(args[3:], rootHashFile, p.HashName)
			if err != nil {
				return err
			}
			client, err := dm.Open(dm.DefaultControl)
			if err != nil {
				return fmt.Errorf("device-mapper: %w", err)
			}
			defer client.Close()
			path, err := activate.Verity(client, name, dataPath, hashPath, p, root, activate.VerityOptions{
				Corruption: mode, IgnoreZeroBlocks: ignoreZero, CheckAtMostOnce: checkAtMostOnce, UseTasklets: useTasklet,
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), path)
			return nil
		},
	}
	f.register(cmd.Flags(), false)
	fl := cmd.Flags()
	fl.StringVar(&rootHashFile, "root-hash-file", "", "read the root hash (hex) from this file")
	fl.BoolVar(&ignoreCorr, "ignore-corruption", false, "log corrupted blocks but return their data")
	fl.BoolVar(&restartCorr, "restart-on-corruption", false, "restart the machine on a corrupted block")
	fl.BoolVar(&panicCorr, "panic-on-corruption", false, "panic the kernel on a corrupted block")
	fl.BoolVar(&ignoreZero, "ignore-zero-blocks", false, "return zeros for blocks whose hash is that of a zero block, without reading them")
	fl.BoolVar(&checkAtMostOnce, "check-at-most-once", false, "verify each data block only the first time it is read")
	fl.BoolVar(&useTasklet, "use-tasklets", false, "verify in kernel tasklets (try_verify_in_tasklet)")
	return cmd
}

func newVerityCloseCmd() *cobra.Command {
	var deferred bool
	cmd := &cobra.Command{
		Use:   "close NAME",
		Short: "Remove the dm-verity device /dev/mapper/NAME",
		Long: `Remove /dev/mapper/NAME, retrying for a moment while it is busy. With
--deferred the kernel removes it when its last user closes it.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, err := openMapped(args[0])
			if err != nil {
				return err
			}
			defer client.Close()
			return client.RemoveWith(args[0], dm.RemoveOptions{Deferred: deferred})
		},
	}
	cmd.Flags().BoolVar(&deferred, "deferred", false, "remove when the last user closes the device")
	return cmd
}

// openMapped opens device-mapper and checks that the device name exists.
func openMapped(name string) (*dm.Client, error) {
	client, err := dm.Open(dm.DefaultControl)
	if err != nil {
		return nil, fmt.Errorf("device-mapper: %w", err)
	}
	info, err := client.Info(name)
	if err == nil && !info.Exists {
		err = fmt.Errorf("no device-mapper device named %q", name)
	}
	if err != nil {
		client.Close()
		return nil, err
	}
	return client, nil
}
