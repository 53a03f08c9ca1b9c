package lab

import (
	"github.com/confidisk/confidisk/initrd"
)

// Where [DracutUserNet] puts its files in the initrd: under /usr and /etc,
// which are directories in a dracut initrd (an appended archive that named
// /lib or /bin, symbolic links there, would replace them with directories).
const (
	dracutNetBusybox = "/usr/lib/confidisk-lab/busybox"
	dracutNetScript  = "/usr/lib/confidisk-lab/net.sh"
	dracutNetUnit    = "/etc/systemd/system/lab-net.service"
)

// dracutNetSh brings up the first network interface that is not lo (udev
// loads virtio_net and may rename eth0) with GuestIP/24 and the default
// route via HostIP, as the lab's own /init does, waiting up to two minutes
// for the interface (udev under TCG). It runs in busybox's shell, whose
// applets (ip, sleep) win over anything in the initrd's PATH.
const dracutNetSh = `n=
i=0
while :; do
	for d in /sys/class/net/*; do
		case ${d##*/} in lo|'*') ;; *) n=${d##*/}; break ;; esac
	done
	[ -n "$n" ] && break
	i=$((i + 1))
	if [ $i -gt 120 ]; then
		echo "LAB-NET no network interface after 120s: $(ls /sys/class/net)"
		exit 1
	fi
	sleep 1
done
ip link set lo up &&
ip link set "$n" up &&
ip addr add ` + GuestIP + `/24 dev "$n" &&
ip route add default via ` + HostIP + ` || exit 1
echo "LAB-NET $n ` + GuestIP + `/24 via ` + HostIP + ` after ${i}s"
`

// dracutNetService runs dracutNetSh before confidisk-boot.service.
const dracutNetService = `[Unit]
Description=lab: the user network (` + GuestIP + `/24 via ` + HostIP + `) for the broker, without dracut-network
DefaultDependencies=no
After=systemd-udev-trigger.service systemd-modules-load.service
Wants=systemd-udev-trigger.service
Before=confidisk-boot.service

[Service]
Type=oneshot
RemainAfterExit=yes
StandardOutput=journal+console
ExecStart=` + dracutNetBusybox + ` sh ` + dracutNetScript + `
`

// DracutUserNet adds to a (an archive appended to a dracut systemd initrd,
// see [AppendArchive]) what that initrd needs to reach the lab broker on a
// [Machine] with UserNet: a oneshot unit, ordered before
// confidisk-boot.service and wanted by sysinit.target, that brings up the
// network card with [GuestIP]/24 and the default route via [HostIP] using
// the host's static busybox's ip applet. Debian's dracut-core has no
// network module of its own (dracut-network, which conflicts with it,
// does), so this is lab-only: a distribution that fetches keys over the
// network in its initrd brings its own network setup. The card's driver,
// virtio_net, is one of [Dracut]'s default drivers; udev loads it.
func DracutUserNet(a *initrd.Archive) error {
	bb, err := initrd.StaticBusybox()
	if err != nil {
		return err
	}
	if err := a.HostFile(dracutNetBusybox, bb); err != nil {
		return err
	}
	a.File(dracutNetScript, 0o755, []byte(dracutNetSh))
	a.File(dracutNetUnit, 0o644, []byte(dracutNetService))
	a.Symlink("/etc/systemd/system/sysinit.target.wants/lab-net.service", dracutNetUnit)
	return nil
}
