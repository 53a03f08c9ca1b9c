package lab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// A stubPackage is a systemd-boot-efi build the lab takes its EFI stubs
// from: pinned by version and by the SHA-256 of the .deb, so that every
// machine builds the same UKIs.
type stubPackage struct {
	Major   int
	Suite   string // the Debian suite apt finds it in
	Version string
	SHA256  string
}

// stubPackages are the stubs the lab boots. bookworm ships 252, which has
// no addons; 254 (bookworm-backports) and 257 (trixie) do.
var stubPackages = []stubPackage{
	{252, "bookworm", "252.39-1~deb12u2", "8f2b81bdcfafc466882a0cae460272dbf10d8d97c6a3c1c6ea33038c155a2f5e"},
	{254, "bookworm-backports", "254.26-1~bpo12+1", "aef15d1d12fb9ba9674ed93595ce2659533ae75ab1379b2f960f511b577e8c96"},
	{257, "trixie", "257.13-1~deb13u1", "390ecdcef9bbb753f51bb6d8f696bdae2f1dbedde7239c49ccb2512f137a8933"},
}

// StubSet locates one unpacked systemd-boot-efi package.
type StubSet struct {
	Major   int
	Version string
	// Linux is linuxx64.efi.stub; Addon is addonx64.efi.stub ("" before
	// 254).
	Linux, Addon string
}

// Stubs returns the systemd EFI stubs of the given release (252, 254 or
// 257), downloading systemd-boot-efi into cacheDir/stub/<version> on first
// use ("" means [DefaultCacheDir]). The download uses an apt state of its
// own under cacheDir/apt (sources bookworm, bookworm-backports and trixie),
// so the machine's apt configuration is neither needed nor touched. Like
// [Kernel], a version is complete only once its marker is written.
func Stubs(ctx context.Context, cacheDir string, major int) (*StubSet, error) {
	var pkg *stubPackage
	for i := range stubPackages {
		if stubPackages[i].Major == major {
			pkg = &stubPackages[i]
		}
	}
	if pkg == nil {
		return nil, fmt.Errorf("the lab has no systemd-boot-efi %d (it has 252, 254 and 257)", major)
	}
	if cacheDir == "" {
		d, err := DefaultCacheDir()
		if err != nil {
			return nil, err
		}
		cacheDir = d
	}
	base := filepath.Join(cacheDir, "stub")
	dir := filepath.Join(base, pkg.Version)
	set := &StubSet{Major: major, Version: pkg.Version, Linux: filepath.Join(dir, "usr/lib/systemd/boot/efi/linuxx64.efi.stub")}
	if major >= 254 {
		set.Addon = filepath.Join(dir, "usr/lib/systemd/boot/efi/addonx64.efi.stub")
	}
	if fileExists(filepath.Join(dir, "complete")) {
		return set, nil
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, fmt.Errorf("create stub cache: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(base, "lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	if fileExists(filepath.Join(dir, "complete")) {
		return set, nil
	}
	if err := fetchStub(ctx, cacheDir, *pkg, dir); err != nil {
		return nil, fmt.Errorf("systemd-boot-efi %s: %w", pkg.Version, err)
	}
	return set, nil
}

// fetchStub downloads pkg with the lab's private apt state, checks its
// digest and unpacks it into dir.
func fetchStub(ctx context.Context, cacheDir string, pkg stubPackage, dir string) error {
	aptGet, err := lookTool("apt-get", "apt")
	if err != nil {
		return err
	}
	dpkgDeb, err := lookTool("dpkg-deb", "dpkg")
	if err != nil {
		return err
	}
	opts, err := privateApt(cacheDir)
	if err != nil {
		return err
	}
	tmp := dir + ".partial"
	for _, d := range []string{tmp, dir} {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("remove stale %s: %w", d, err)
		}
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	download := append(opts, "download", "systemd-boot-efi="+pkg.Version)
	if _, err := runOut(ctx, tmp, aptGet, download...); err != nil {
		if _, uerr := runOut(ctx, "", aptGet, append(opts, "update")...); uerr != nil {
			return fmt.Errorf("apt-get update (lab apt state): %w", uerr)
		}
		if _, err := runOut(ctx, tmp, aptGet, download...); err != nil {
			return fmt.Errorf("download from %s (the pin in lab/stub.go may be gone from the archive): %w", pkg.Suite, err)
		}
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return fmt.Errorf("apt-get download left %d .deb files, want 1", len(debs))
	}
	if err := checkSHA256(debs[0], pkg.SHA256); err != nil {
		return err
	}
	if _, err := runOut(ctx, "", dpkgDeb, "-x", debs[0], tmp); err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	if err := os.Remove(debs[0]); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, "complete"), []byte(pkg.Version+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

// privateApt writes the lab's apt sources and returns the apt-get options
// that use them with state and cache under cacheDir/apt.
func privateApt(cacheDir string) ([]string, error) {
	d := filepath.Join(cacheDir, "apt")
	for _, sub := range []string{"lists/partial", "cache/archives/partial"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o755); err != nil {
			return nil, err
		}
	}
	const sources = "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main\n" +
		"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-backports main\n" +
		"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main\n"
	list := filepath.Join(d, "sources.list")
	if err := os.WriteFile(list, []byte(sources), 0o644); err != nil {
		return nil, err
	}
	opts := []string{"-q",
		"-o", "Dir::Etc::sourcelist=" + list, "-o", "Dir::Etc::sourceparts=/dev/null",
		"-o", "Dir::State::Lists=" + filepath.Join(d, "lists"), "-o", "Dir::Cache=" + filepath.Join(d, "cache"),
	}
	if os.Geteuid() == 0 {
		// apt's _apt sandbox user cannot write into root's cache.
		opts = append(opts, "-o", "APT::Sandbox::User=root")
	}
	return opts, nil
}

func checkSHA256(path, want string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("%s: sha256 %s, want %s", filepath.Base(path), got, want)
	}
	return nil
}
