// Package integrity holds the on-disk format of the Linux dm-integrity target
// as LUKS2 volumes with authenticated encryption use it: the superblock
// ([Superblock], [ParseSuperblock], [ReadSuperblock]), the geometry the
// kernel gives a device when it formats it ([NewLayout], [Params]), and the
// tag and key sizes of dm-crypt integrity specs ([TagSize], [KeySize]).
//
// The package is pure Go: it takes byte slices and io.ReaderAt, needs no
// device-mapper and runs on any OS.
//
// Sources (read for facts; no code is copied):
//
//   - Linux drivers/md/dm-integrity.c (torvalds/linux at commit
//     00204ae3d6712ee053353920e3ce2b00c35ef75b, target version 1.13.0):
//     struct superblock, SB_VERSION_*, SB_FLAG_*, DEFAULT_*,
//     calculate_journal_section_size, calculate_device_limits,
//     get_provided_data_sectors, initialize_superblock, sb_set_version,
//     get_area_and_offset, get_data_sector, get_metadata_sector_and_offset
//     and the superblock checks in dm_integrity_ctr.
//   - cryptsetup lib/integrity/integrity.c and integrity.h
//     (INTEGRITY_read_superblock, INTEGRITY_tag_size, INTEGRITY_key_size,
//     INTEGRITY_format), lib/utils_crypt.c (crypt_parse_integrity_mode),
//     lib/libdevmapper.c (dm_integrity_target_set, get_dm_integrity_params)
//     and lib/setup.c (LUKS2 format path).
//   - The kernel documentation, Documentation/admin-guide/device-mapper/
//     dm-integrity.rst.
//
// Integers on disk are little-endian. All sector counts are in 512-byte
// sectors, as in device-mapper tables.
package integrity
