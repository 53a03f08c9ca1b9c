package lab

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"path/filepath"
)

// tokenPluginPackages are the Debian trixie packages of cryptsetup 2.7 and
// systemd 257's systemd-tpm2 token plugin (libcryptsetup-token-systemd-tpm2.so,
// in systemd-cryptsetup), with every library they load: by DT_NEEDED, and by
// dlopen the tpm2-tss libraries systemd loads to talk to a TPM (ESYS, MU, RC
// and the device TCTI, for /dev/tpmrm0). Each is pinned by version and by
// the SHA-256 of its .deb, as [debPackage] says.
var tokenPluginPackages = []debPackage{
	{"cryptsetup-bin", "trixie", "2:2.7.5-2", "b77b192cf1c35f96da02134300bb227ab92c49eec2444268049fa1ce84fb9bc7"},
	{"libcryptsetup12", "trixie", "2:2.7.5-2", "84f6596296c346c1c8f6bb16b0d4d485215b7a23a23ff21e9c28e35822d45a7b"},
	{"systemd-cryptsetup", "trixie", "257.13-1~deb13u1", "08ec2063867d0e5861b01340f9705dfe0ef4c4612dc5bdfeae29e5d8e7370034"},
	{"libsystemd-shared", "trixie", "257.13-1~deb13u1", "2d349824e57f88507e2a33360610d8afc143a4ad5e80ee4bf8f37b826d6f37f9"},
	{"libc6", "trixie", "2.41-12+deb13u5", "b59b0625cd1a791375d40dab23a4d5d3d0641e3d0a773501becdc3725b7f99cf"},
	{"libssl3t64", "trixie", "3.5.9-1~deb13u1", "ffefb9af363e0e4592251b2533eb06453c8e470f7772e40263c4b2129251a6d5"},
	{"libjson-c5", "trixie", "0.18+ds-1", "4fbd5fb4d54c626f05d68abf38a31533fbf1bf4a87068696abe041ee9c974fe0"},
	{"libdevmapper1.02.1", "trixie", "2:1.02.205-2", "e924e0df8823987f271b7d3a375dc2f8adcd76db66f09d0273043c885edb0af0"},
	{"libblkid1", "trixie", "2.41.5-0+deb13u1", "81535f3c2c0efc732965907c8749103a0a26377c761622c9ce39b4c92dcde52f"},
	{"libuuid1", "trixie", "2.41.5-0+deb13u1", "c1bf4c4c3ff48c57fabf93307dfb56996b60cfa33927afc4158b5db36fb2721e"},
	{"libpopt0", "trixie", "1.19+dfsg-2", "07f649b706852af937654295697dcfc7858f3295718ec18681dce1704663e4f2"},
	{"libtss2-esys-3.0.2-0t64", "trixie", "4.1.3-1.2", "87c0747c54e12be29c149145830385f5c6816b0fd962391858d63d70c921859e"},
	{"libtss2-mu-4.0.1-0t64", "trixie", "4.1.3-1.2", "b7e1b9a05623f304aa82b4a577f8948e967f9212e5871c76bd88dd8e96b3e4ea"},
	{"libtss2-rc0t64", "trixie", "4.1.3-1.2", "e04baea4ffaf6f49011dd42d34b19cfd9f81abe518c24357b1ffa72e7ca74b84"},
	{"libtss2-sys1t64", "trixie", "4.1.3-1.2", "ffd806325106fb22cf479e65c6c74ef6c5db598a943dfd3b6a38b1edbdd55e99"},
	{"libtss2-tcti-device0t64", "trixie", "4.1.3-1.2", "e2c07f7258f52b611edb96945049dfc5dd0f066b9464cd2338716d73f78fc495"},
	{"libudev1", "trixie", "257.13-1~deb13u1", "5d41c284f5a93b05bc7d648b61a02dd2bb9ff05b2261ad1a8b7d96044a0cfa88"},
	{"libselinux1", "trixie", "3.8.1-1", "68bb8d32bd8d6d7d2f5952a169db03d1484b46ae1e52abccdec42a19dccea5d5"},
	{"libpcre2-8-0", "trixie", "10.46-1~deb13u3", "e226f661d918f04daf38cdbc4806b7ed7d6ef95c7eb0ade692fc350e31970040"},
	{"libcap2", "trixie", "1:2.75-10+deb13u1+b3", "89fc4d34fc7a28ad6f0fcd0c561ab253b9dedf6f77f5a000b47c276c8295bf67"},
	{"libcrypt1", "trixie", "1:4.4.38-1", "0ebc144d662e3197982d1bf3a7b8b35ca845e54c68811de0328b1f0d7c67585c"},
	{"libacl1", "trixie", "2.3.2-2+b1", "08074f01e384bc07c0c2d79a58cf4a6523f71cf75d1808101c79617656c9a39d"},
	{"libmount1", "trixie", "2.41.5-0+deb13u1", "6d00f45f2e80e078e906e3eedecd3ba6913e39fef49bff361ee583f17f00ec05"},
	{"libseccomp2", "trixie", "2.6.0-2", "89d5138e05fb6a86b9afd8b54dc0fb4b14f4c27c05e6c5f767c2132bdf808531"},
	{"libzstd1", "trixie", "1.5.7+dfsg-1", "2f6a2aeacfc925eba8b00ac9139bc4bfccf8cacb09eb93de067074b26948eef9"},
	{"libaudit1", "trixie", "1:4.0.2-2+deb13u1", "3d1dd3f031a56f01b747e2acc0e14575212580e6fa63d800c44cb0a31f1edfd7"},
	{"libcap-ng0", "trixie", "0.8.5-4+b1", "20a9e4b0619a3eb2566338223bed135dde5a601eaa2f8fdd5f20b94506addcac"},
	{"libpam0g", "trixie", "1.7.0-5", "4f5bde27d8df2de6ea8990319b42d9974f56a3ba9907ce7296fd0f8964fc9fb1"},
	{"zlib1g", "trixie", "1:1.3.dfsg+really1.3.1-1+deb13u1", "8c27c342230503b73dfde629642c3b352e87b554e06d60cf58772f236a305ceb"},
}

// The tree's layout (Debian's merged /usr).
const (
	pluginLibDir    = "usr/lib/x86_64-linux-gnu"
	pluginLoader    = pluginLibDir + "/ld-linux-x86-64.so.2"
	pluginTokensDir = pluginLibDir + "/cryptsetup"
	pluginSO        = pluginTokensDir + "/libcryptsetup-token-systemd-tpm2.so"
	pluginBinary    = "usr/sbin/cryptsetup"
)

// pluginDlopened are the libraries systemd 257 loads with dlopen to unseal
// from /dev/tpmrm0 (src/shared/tpm2-util.c: dlopen_tpm2, and the TCTI named
// by the device string, "device" for a device node): no DT_NEEDED entry
// names them.
var pluginDlopened = []string{"libtss2-esys.so.0", "libtss2-rc.so.0", "libtss2-mu.so.0", "libtss2-tcti-device.so.0"}

// TokenPlugin is cryptsetup 2.7 with systemd 257's systemd-tpm2 token plugin
// from Debian trixie, unpacked into one directory instead of installed: it
// brings its own dynamic loader and libraries, so it runs beside bookworm's
// (on the host, or copied into a lab guest) without touching them. It is
// the oracle for tokens that systemd 252 cannot read, such as a keyslot
// sealed offline to an SRK (tpm2_srk and a seeded blob, systemd >= 255).
//
// systemd's plugin finds its TPM only as /sys/class/tpmrm's one device
// (cryptsetup passes it no device, and SYSTEMD_TPM2_DEVICE is read only
// when a caller passes none to tpm2_context_new, which the plugin does not
// do): unsealing with it needs a kernel TPM, a lab guest's vTPM.
type TokenPlugin struct {
	// Root is the unpacked tree (usr/sbin/cryptsetup, usr/lib/…).
	Root string
	// CryptsetupVersion and SystemdVersion are the Debian versions of
	// cryptsetup-bin and systemd-cryptsetup.
	CryptsetupVersion, SystemdVersion string
}

// TrixieTokenPlugin returns cryptsetup 2.7 and systemd 257's token plugin,
// unpacked on first use into cacheDir/tokenplugin/<digest of the pins>
// ("" means [DefaultCacheDir]) with the lab's private apt state (see
// [privateApt]), every .deb checked against its pinned SHA-256.
func TrixieTokenPlugin(ctx context.Context, cacheDir string) (*TokenPlugin, error) {
	root, err := unpackedRoot(ctx, cacheDir, "tokenplugin", tokenPluginPackages)
	if err != nil {
		return nil, err
	}
	p := &TokenPlugin{Root: root}
	for _, pkg := range tokenPluginPackages {
		switch pkg.Name {
		case "cryptsetup-bin":
			p.CryptsetupVersion = pkg.Version
		case "systemd-cryptsetup":
			p.SystemdVersion = pkg.Version
		}
	}
	return p, nil
}

// Command returns the argument vector that runs the tree's cryptsetup with
// the plugin when the tree is at dir (p.Root on the host, the directory
// [TokenPlugin.GuestFiles] put it under in a guest): the tree's loader,
// with the tree's libraries before any other (they are found for DT_NEEDED
// and dlopen alike), and cryptsetup's --external-tokens-path. Append
// cryptsetup's own arguments.
func (p *TokenPlugin) Command(dir string) []string {
	lib := path.Join(dir, pluginLibDir)
	return []string{
		path.Join(dir, pluginLoader),
		"--library-path", lib + ":" + path.Join(lib, "systemd"),
		path.Join(dir, pluginBinary),
		"--external-tokens-path", path.Join(dir, pluginTokensDir),
	}
}

// GuestFiles returns what [Scenario.Files] needs to run [TokenPlugin.Command]
// (dir) in a guest: guest path under dir → host path, for the loader,
// cryptsetup, the plugin, the libraries systemd loads with dlopen, and every
// library these need (DT_NEEDED, followed in the tree). A library the tree
// does not hold is an error, never a silent fallback to the guest's own.
func (p *TokenPlugin) GuestFiles(dir string) (map[string]string, error) {
	files := map[string]string{}
	add := func(rel string) error {
		host := filepath.Join(p.Root, rel)
		if _, err := os.Stat(host); err != nil {
			return fmt.Errorf("token plugin tree: %w", err)
		}
		files[path.Join(dir, rel)] = host
		return nil
	}
	queue := []string{pluginLoader, pluginBinary, pluginSO}
	for _, so := range pluginDlopened {
		queue = append(queue, path.Join(pluginLibDir, so))
	}
	seen := map[string]bool{}
	for len(queue) > 0 {
		rel := queue[0]
		queue = queue[1:]
		if seen[rel] {
			continue
		}
		seen[rel] = true
		if err := add(rel); err != nil {
			return nil, err
		}
		needed, err := elfNeeded(filepath.Join(p.Root, rel))
		if err != nil {
			return nil, err
		}
		for _, so := range needed {
			dep, err := p.findLibrary(so)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", rel, err)
			}
			queue = append(queue, dep)
		}
	}
	return files, nil
}

// findLibrary returns the tree-relative path of the library soname, looked
// up where [TokenPlugin.Command]'s library path looks.
func (p *TokenPlugin) findLibrary(soname string) (string, error) {
	for _, d := range []string{pluginLibDir, path.Join(pluginLibDir, "systemd")} {
		rel := path.Join(d, soname)
		if fileExists(filepath.Join(p.Root, rel)) {
			return rel, nil
		}
	}
	return "", fmt.Errorf("needs %s, which no pinned package provides", soname)
}

// elfNeeded returns the DT_NEEDED entries of the ELF file at path.
func elfNeeded(file string) ([]string, error) {
	f, err := elf.Open(file)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	defer f.Close()
	libs, err := f.ImportedLibraries()
	if err != nil {
		return nil, fmt.Errorf("dynamic section of %s: %w", file, err)
	}
	return libs, nil
}

// unpackedRoot returns cacheDir/<kind>/<key> with every package of pkgs
// unpacked into it (dpkg-deb -x, one tree), downloading them on first use
// with one apt-get download through the lab's private apt state; key is a
// digest of the pins, so a changed pin unpacks a new tree. As for
// [unpackedDeb], the tree is complete only once its marker is written, and
// a lock serialises concurrent callers.
func unpackedRoot(ctx context.Context, cacheDir, kind string, pkgs []debPackage) (string, error) {
	if cacheDir == "" {
		d, err := DefaultCacheDir()
		if err != nil {
			return "", err
		}
		cacheDir = d
	}
	h := sha256.New()
	for _, p := range pkgs {
		fmt.Fprintf(h, "%s %s %s\n", p.Name, p.Version, p.SHA256)
	}
	base := filepath.Join(cacheDir, kind)
	dir := filepath.Join(base, hex.EncodeToString(h.Sum(nil))[:16])
	err := fillOnce(ctx, dir, filepath.Join(base, "lock"), func() error {
		return fetchDebs(ctx, cacheDir, pkgs, dir)
	})
	if err != nil {
		return "", fmt.Errorf("%s: %w", kind, err)
	}
	return dir, nil
}
