// Package dist holds the files distributions install to run confidisk in
// their own initrds (docs/distros.md): the dracut module in
// dracut/90confidisk and its systemd unit, which `confidisk image sysext`
// also puts into the initrd system extension.
package dist

import _ "embed"

// BootUnit is confidisk-boot.service: `confidisk boot --no-switch-root`
// before initrd-root-fs.target in a systemd initrd.
//
//go:embed dracut/90confidisk/confidisk-boot.service
var BootUnit []byte
