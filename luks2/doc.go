// Package luks2 reads and writes LUKS2 headers in pure Go, compatible with
// cryptsetup 2.6 in both directions: the binary header pair with its
// checksums and seqid, the JSON metadata (keyslots, segments, digests,
// tokens, config), keyslots with the anti-forensic splitter and the
// pbkdf2, argon2i and argon2id KDFs, pbkdf2 volume-key digests, and crypt
// segments with or without dm-integrity (aes-xts-plain64 with hmac-sha256 or
// hmac-sha512, aes-gcm-random with aead).
//
// The format is the one of the LUKS2 on-disk format specification
// (cryptsetup docs/on-disk-format-luks2.pdf, version 1.1.x) and of
// cryptsetup's lib/luks2; section numbers in doc comments refer to that
// document.
//
// What the header protects, and what it does not: the checksums and the
// second copy guard against accidental damage only. Anyone who can write the
// device can replace the whole header — a keyslot that opens with a known
// passphrase, a token pointing anywhere. Higher layers (the fixation digest
// and creation proofs of the guest boot flow) must bind the volume key to
// what the guest expects.
//
// The package works on [io.ReaderAt] and [io.WriterAt]; header writes need
// a [SyncWriterAt] (an *os.File) and sync before, between and after the two
// copies, so that a power cut leaves the old or the new header. It maps
// nothing and needs no privileges. Device activation lives in package
// activate.
package luks2
