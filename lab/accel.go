package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// accelCache remembers the outcome of the KVM probe for the life of the
// process; it is the package's only mutable global state. A probe that ended
// because its context ended decides nothing and is not cached.
var accelCache struct {
	mu    sync.Mutex
	done  bool
	accel string
}

// probeTimeout bounds the KVM probe boot; a working KVM reaches /init in
// about a second, a broken nested KVM usually stops in the decompressor at
// once ("KVM internal error") but may also hang.
const probeTimeout = 30 * time.Second

// Accelerator returns the QEMU accelerator to use: CONFIDISK_LAB_ACCEL
// (tcg or kvm) when set; else "tcg" when /dev/kvm cannot be opened; else
// the outcome of a probe boot of k under KVM that must reach /init ("kvm")
// or not ("tcg"). The probe runs once per process; see accelCache.
func Accelerator(ctx context.Context, k *KernelInfo) (string, error) {
	switch a := os.Getenv("CONFIDISK_LAB_ACCEL"); a {
	case "tcg", "kvm":
		return a, nil
	case "":
	default:
		return "", fmt.Errorf("CONFIDISK_LAB_ACCEL=%q: want tcg or kvm", a)
	}
	accelCache.mu.Lock()
	defer accelCache.mu.Unlock()
	if accelCache.done {
		return accelCache.accel, nil
	}
	accel, err := probeKVM(ctx, k)
	if err != nil {
		return "", err
	}
	accelCache.done, accelCache.accel = true, accel
	return accel, nil
}

// probeKVM boots k with a busybox-only initramfs under KVM.
func probeKVM(ctx context.Context, k *KernelInfo) (string, error) {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "tcg", nil
	}
	f.Close()
	dir, err := os.MkdirTemp("", "lab-kvm-probe-")
	if err != nil {
		return "", fmt.Errorf("kvm probe: %w", err)
	}
	defer os.RemoveAll(dir)
	initrd := filepath.Join(dir, "initrd")
	ir := Initramfs{ModuleDirs: []string{}}
	if err := ir.Build(ctx, k, initrd); err != nil {
		return "", fmt.Errorf("kvm probe: %w", err)
	}
	m, err := NewMachine(dir, k)
	if err != nil {
		return "", fmt.Errorf("kvm probe: %w", err)
	}
	m.Accel = "kvm"
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	res, err := m.Boot(pctx, BootOptions{Initrd: initrd})
	if ctx.Err() != nil {
		return "", fmt.Errorf("kvm probe: %w", ctx.Err())
	}
	if err == nil && res.InitTime > 0 {
		return "kvm", nil
	}
	return "tcg", nil
}
