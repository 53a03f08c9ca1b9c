package lab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// A debPackage is a Debian package the lab unpacks from outside the
// machine's apt sources (bookworm-backports, trixie), pinned by version and
// by the SHA-256 of the .deb so that every machine runs the same bytes.
type debPackage struct {
	Name, Suite, Version, SHA256 string
}

// unpackedDeb returns cacheDir/<kind>/<version> with pkg unpacked in it
// (dpkg-deb -x), downloading it on first use through the lab's own apt state
// under cacheDir/apt (see [privateApt]): the machine's apt configuration is
// neither needed nor touched. As for [Kernel], a version is complete only
// once its marker is written, and a lock serialises concurrent callers.
func unpackedDeb(ctx context.Context, cacheDir, kind string, pkg debPackage) (string, error) {
	if cacheDir == "" {
		d, err := DefaultCacheDir()
		if err != nil {
			return "", err
		}
		cacheDir = d
	}
	base := filepath.Join(cacheDir, kind)
	dir := filepath.Join(base, pkg.Version)
	err := fillOnce(ctx, dir, filepath.Join(base, "lock"), func() error {
		return fetchDebs(ctx, cacheDir, []debPackage{pkg}, dir)
	})
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", pkg.Name, pkg.Version, err)
	}
	return dir, nil
}

// fetchDebs downloads pkgs with the lab's private apt state, checks their
// digests and unpacks them all into dir (one tree), which appears only
// complete: unpacked beside it, its marker written, then renamed.
func fetchDebs(ctx context.Context, cacheDir string, pkgs []debPackage, dir string) error {
	dpkgDeb, err := lookTool("dpkg-deb", "dpkg")
	if err != nil {
		return err
	}
	tmp, debDir := dir+".partial", dir+".debs"
	for _, d := range []string{tmp, debDir, dir} {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("remove stale %s: %w", d, err)
		}
	}
	for _, d := range []string{tmp, debDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	defer os.RemoveAll(debDir)
	if err := aptDownload(ctx, cacheDir, debDir, pkgs); err != nil {
		return err
	}
	var names []string
	for _, p := range pkgs {
		deb, err := downloadedDeb(debDir, p.Name)
		if err != nil {
			return err
		}
		if err := checkSHA256(deb, p.SHA256); err != nil {
			return err
		}
		if _, err := runOut(ctx, "", dpkgDeb, "-x", deb, tmp); err != nil {
			return fmt.Errorf("unpack %s: %w", p.Name, err)
		}
		names = append(names, p.Name+" "+p.Version)
	}
	if err := os.WriteFile(filepath.Join(tmp, "complete"), []byte(strings.Join(names, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

// aptDownload downloads the pinned pkgs into dir with the lab's private apt
// state, updating its package lists first when that fails (the first use,
// or lists older than a pin). Every test process of the machine shares that
// state, and apt-get refuses a second update while one runs ("Could not get
// lock"), so a lock under cacheDir/apt serialises its users.
func aptDownload(ctx context.Context, cacheDir, dir string, pkgs []debPackage) error {
	aptGet, err := lookTool("apt-get", "apt")
	if err != nil {
		return err
	}
	opts, err := privateApt(cacheDir)
	if err != nil {
		return err
	}
	unlock, err := lockFile(ctx, filepath.Join(cacheDir, "apt", "lock"))
	if err != nil {
		return err
	}
	defer unlock()
	download := slices.Concat(opts, []string{"download"})
	for _, p := range pkgs {
		download = append(download, p.Name+"="+p.Version)
	}
	if _, err := runOut(ctx, dir, aptGet, download...); err == nil {
		return nil
	}
	if _, err := runOut(ctx, "", aptGet, slices.Concat(opts, []string{"update"})...); err != nil {
		return fmt.Errorf("apt-get update (lab apt state): %w", err)
	}
	if _, err := runOut(ctx, dir, aptGet, download...); err != nil {
		return fmt.Errorf("download (a pin may be gone from the archive): %w", err)
	}
	return nil
}

// privateApt writes the lab's apt sources (bookworm, bookworm-backports,
// trixie) and returns the apt-get options that use them, with state and
// cache under cacheDir/apt.
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
