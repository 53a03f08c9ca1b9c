// Package e2e holds the end-to-end scenarios of confidisk: each boots a real
// Linux kernel under QEMU with swtpm (package lab) and checks what
// confidisk does there with device-mapper, against the cryptsetup tools as
// oracles. Run them with `make lab`; `make test` includes them.
package e2e
