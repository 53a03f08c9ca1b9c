// Package dm talks to the Linux device-mapper and builds the tables of the
// targets confidisk uses: linear, verity, crypt, integrity and clone.
//
// The package has two halves:
//
//   - Tables (every OS): [Target] is one line of a device-mapper table
//     ("<start> <length> <type> <params>", see the kernel's
//     Documentation/admin-guide/device-mapper/ directory). The builders
//     [LinearParams], [VerityParams], [CryptParams], [IntegrityParams] and
//     [CloneParams] produce the exact lines cryptsetup, veritysetup,
//     integritysetup and systemd-clonesetup load, validating their input
//     first. Key material in a target never appears in [Target.String],
//     [Target.Redacted] or an error message; only [Target.Line] and the
//     Params field carry it.
//   - The client (Linux only): Client issues the DM_* ioctls of
//     include/uapi/linux/dm-ioctl.h on /dev/mapper/control. The ioctl buffer
//     is built and parsed by pure functions that are tested without a kernel.
package dm
