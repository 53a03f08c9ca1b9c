// Package clonetab reads and writes /etc/clonetab, the table of dm-clone
// devices that systemd sets up at boot (clonetab(5), first released in
// systemd 262; systemd-clonesetup-generator(8) turns each line into a
// systemd-clonesetup@NAME.service that runs systemd-clonesetup(8)).
// confidisk's dm-clone read-write root writes such a line to hand the clone
// over to systemd, and reads one back to check it.
//
// # Sources
//
// The format was taken from systemd/systemd (PR #40700, "add support to
// clone devices via /etc/clonetab"):
//
//   - man/clonetab.xml at 01813c3e9f2337442f2dabf6b88234892e0f555a and
//     81c6ce9e752a2d5cd04c47d71e9fc2ad15a122a4: the fields, the comment and
//     blank-line rules, the "-" placeholder and the EXAMPLES. These are drafts
//     of the PR; they still spell the option region_size=N in 512-byte
//     sectors. The page as released in 262 spells it region-size=BYTES; only
//     its first screen (up to the option's heading) could be read, from the
//     rendered page "CLONETAB(5) ... systemd 262".
//   - man/systemd-clonesetup.xml at 2655d41e82a9c528a0e468fad90a068251ba87fd:
//     "the supported option in OPTIONS is region-size=BYTES, where BYTES is
//     measured in bytes (standard suffixes like K, M, G are supported)".
//   - src/clonesetup/clonesetup.c at fa5adc8e7fd785c347d99b7b3925071aa0b61f07
//     and a later stored version (no commit hash recorded) that renames the
//     key to region-size=: parse_clone_options splits the fifth field on
//     ",", skips "-", reads region-size= with parse_size(value, 1024) and
//     accepts a power of two from 4 KiB to 1 GiB (default 4 KiB).
//   - src/clonesetup/clonesetup-generator.c (the version that calls
//     systemd-clonesetup) and src/clonesetup/clonesetup-util.c at
//     fa5adc8e7fd785c347d99b7b3925071aa0b61f07: the line parser
//     (read_stripped_line, then sscanf "%ms %ms %ms %ms %ms") and
//     validate_fields.
//   - src/clonesetup/clonesetup-ioctl.c at
//     03de27e45555a354fd6a03019dd5228097b4c7b8 and its successor: the table
//     systemd loads (see "dm-clone" below).
//   - src/basic/parse-util.c parse_size, src/basic/string-util.c
//     string_is_safe, src/basic/path-util.c path_is_normalized and
//     path_startswith, src/basic/fileio.c read_line_full.
//
// # Format (clonetab(5), DESCRIPTION)
//
// Lines are split on white space. After leading and trailing white space is
// stripped, an empty line or one whose first character is "#" is ignored;
// "#" elsewhere is an ordinary character. Every other line is
//
//	name source-device destination-device metadata-device [options]
//
// The name is the device-mapper name (/dev/mapper/NAME). The three devices
// are paths below /dev/: systemd does not resolve UUID=, LABEL=, PARTUUID=
// or PARTLABEL= (use /dev/disk/by-uuid/... and the like). The options field
// is a comma-separated list, or "-" (or nothing) for none; the one option is
// region-size=BYTES ([Options]). There is no quoting and no escaping: a
// field cannot contain white space, a backslash or a quote.
//
// # Strictness
//
// systemd logs and skips what it cannot use: a line with the wrong number of
// fields or an invalid field is ignored, an unknown option or a bad
// region-size= value draws a warning and the default is used, and a sixth
// field is silently dropped. [Parse] refuses all of these instead, naming the
// line; a file it accepts is one that systemd uses without a warning, with
// the same meaning. It also refuses a few things systemd accepts but that
// cannot work or cannot be written back unchanged, each listed at
// [Entry.Validate]. What [Format] writes, systemd's parser and [Parse] read
// back as the same entries.
//
// # dm-clone
//
// For each entry systemd-clonesetup loads one target over the whole source
// device (Documentation/admin-guide/device-mapper/dm-clone.rst,
// "Constructor"; dm.CloneParams in this repository):
//
//	0 <source sectors> clone <metadata> <destination> <source> <region size / 512> 1 no_hydration
//
// and then sends the message "enable_hydration". Options.RegionSize (bytes)
// is the constructor's region size times 512; dm-clone's limits of 8 to
// 2097152 sectors are 4 KiB to 1 GiB. clonetab has no option for
// no_discard_passdown, hydration_threshold or hydration_batch_size: systemd
// always uses the kernel's defaults for them.
package clonetab
