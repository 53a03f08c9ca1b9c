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
		return fetchDeb(ctx, cacheDir, pkg, dir)
	})
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", pkg.Name, pkg.Version, err)
	}
	return dir, nil
}

// fetchDeb downloads pkg with the lab's private apt state, checks its
// digest and unpacks it into dir.
func fetchDeb(ctx context.Context, cacheDir string, pkg debPackage, dir string) error {
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
	download := slices.Concat(opts, []string{"download", pkg.Name + "=" + pkg.Version})
	if _, err := runOut(ctx, tmp, aptGet, download...); err != nil {
		// First use (no package lists yet), or lists older than the pin.
		if _, uerr := runOut(ctx, "", aptGet, slices.Concat(opts, []string{"update"})...); uerr != nil {
			return fmt.Errorf("apt-get update (lab apt state): %w", uerr)
		}
		if _, err := runOut(ctx, tmp, aptGet, download...); err != nil {
			return fmt.Errorf("download from %s (the pin may be gone from the archive): %w", pkg.Suite, err)
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
