// Package hashes maps the hash names that cryptsetup, veritysetup and the
// kernel crypto API use (sha1, sha224, sha256, sha384, sha512) to Go's
// implementations, for the format packages that share them.
package hashes

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"hash"
)

// Names are the supported names, for messages.
const Names = "sha1, sha224, sha256, sha384, sha512"

// ByName returns the constructor for name, and false when it is not one of
// [Names].
func ByName(name string) (func() hash.Hash, bool) {
	switch name {
	case "sha1":
		return sha1.New, true
	case "sha224":
		return sha256.New224, true
	case "sha256":
		return sha256.New, true
	case "sha384":
		return sha512.New384, true
	case "sha512":
		return sha512.New, true
	}
	return nil, false
}
