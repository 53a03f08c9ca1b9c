package provision

import (
	"bufio"
	"bytes"
	"fmt"
	"path"
	"strings"
)

// In a systemd initrd, systemd-cryptsetup-generator(8) turns /etc/crypttab
// lines and the rd.luks.* / luks.* options of the kernel command line into
// units that open LUKS volumes, with none of the checks of confidisk boot
// (authenticated metadata, fixation, freshness). The state volume must be
// opened by confidisk alone, so a boot refuses when anything else names it.

// luksOptions are the command-line options of systemd-cryptsetup-generator(8)
// (and dracut's crypt module) that name a LUKS volume by its UUID.
var luksOptions = map[string]bool{"rd.luks.uuid": true, "luks.uuid": true, "rd.luks.name": true, "luks.name": true}

// VolumeNames are the names by which crypttab(5) or a command-line option
// can designate the state volume.
type VolumeNames struct {
	Device    string // the partition's device node, e.g. /dev/vda3
	PartUUID  string // its GPT partition UUID
	PartLabel string // its GPT partition name
	LUKSUUID  string // the LUKS2 header's UUID; "" on a blank partition
}

// OtherOpeners returns the crypttab(5) lines and the command-line LUKS
// options (key=value, as [Config.LUKSOptions] holds them) that name the
// volume v: each would have systemd-cryptsetup open it.
func OtherOpeners(v VolumeNames, crypttab []byte, options []string) []string {
	var found []string
	sc := bufio.NewScanner(bytes.NewReader(crypttab))
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if v.names(f[1]) {
			found = append(found, fmt.Sprintf("/etc/crypttab line %d (%s %s)", n, f[0], f[1]))
		}
	}
	for _, o := range options {
		key, value, _ := strings.Cut(o, "=")
		uuid, _, _ := strings.Cut(value, "=") // luks.name=UUID=NAME
		if v.LUKSUUID != "" && strings.EqualFold(strings.TrimPrefix(uuid, "luks-"), v.LUKSUUID) {
			found = append(found, "the command line's "+key+"="+value)
		}
	}
	return found
}

// names reports whether the crypttab(5) device field dev designates v: a
// device path, UUID=, PARTUUID= or PARTLABEL=, or their /dev/disk/by-*
// links.
func (v VolumeNames) names(dev string) bool {
	kind, value, ok := strings.Cut(dev, "=")
	if !ok {
		dir, base := path.Split(path.Clean(dev))
		switch dir {
		case "/dev/disk/by-uuid/":
			kind, value = "UUID", base
		case "/dev/disk/by-partuuid/":
			kind, value = "PARTUUID", base
		case "/dev/disk/by-partlabel/":
			kind, value = "PARTLABEL", base
		default:
			return v.Device != "" && path.Clean(dev) == v.Device
		}
	}
	switch kind {
	case "UUID":
		return v.LUKSUUID != "" && strings.EqualFold(value, v.LUKSUUID)
	case "PARTUUID":
		return v.PartUUID != "" && strings.EqualFold(value, v.PartUUID)
	case "PARTLABEL":
		return v.PartLabel != "" && value == v.PartLabel
	}
	return false
}
