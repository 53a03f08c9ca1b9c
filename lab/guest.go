package lab

import (
	"fmt"
	"strings"

	"github.com/confidisk/confidisk/initrd"
)

// Preamble is the shell code /init sources before the scenario script. It
// defines:
//
//	point NAME           sync, then print "POINT NAME". When the boot was told
//	                     to cut the power at NAME (kernel parameter lab.cut=NAME,
//	                     set by [BootOptions.CutAt]) it then waits forever, so
//	                     nothing after the point reaches the disk before the
//	                     harness kills QEMU.
//	result NAME ok|fail DETAIL...
//	                     print one "RESULT" line (newlines in DETAIL become spaces).
//	check NAME CMD...    run CMD; print "RESULT NAME ok <output tail>" or
//	                     "RESULT NAME fail exit N: <output tail>"; return CMD's status.
//	lab_load NAME PATH   insmod PATH unless /sys/module/NAME exists.
//
// Scenario scripts run under busybox sh with every busybox applet in PATH.
// Debian's busybox-static prefers its applets to PATH, so /lab/tools.sh
// defines a function for each [Initramfs.Tools] program that shares its name
// with an applet (mke2fs, losetup, ...): scripts call it by name as usual,
// but a child "sh -c" needs the full path.
const Preamble = `# confidisk lab preamble
[ -f /lab/tools.sh ] && . /lab/tools.sh
LAB_CUT=
for _w in $(cat /proc/cmdline); do
	case "$_w" in lab.cut=*) LAB_CUT=${_w#lab.cut=} ;; esac
done
unset _w
point() {
	sync
	echo "POINT $1"
	if [ -n "$LAB_CUT" ] && [ "$1" = "$LAB_CUT" ]; then
		while :; do sleep 60; done
	fi
}
result() {
	_n=$1 _s=$2
	shift 2
	printf 'RESULT %s %s %s\n' "$_n" "$_s" "$(printf '%s' "$*" | tr '\n' ' ')"
}
check() {
	_cn=$1
	shift
	_out=$("$@" 2>&1)
	_rc=$?
	_t=$(printf '%s\n' "$_out" | tail -n 3)
	if [ $_rc -eq 0 ]; then
		result "$_cn" ok "$_t"
	else
		result "$_cn" fail "exit $_rc: $_t"
	fi
	return $_rc
}
lab_load() {
	[ -d "/sys/module/$1" ] && return 0
	insmod "$2" || result "lab-insmod-$1" fail "insmod $2 failed"
}
`

// initScript is /init: mount the API file systems, announce LAB-INIT, load
// the modules in order, run the scenario in a subshell, announce LAB-DONE
// with its exit status, power off.
func initScript(load []string) string {
	var b strings.Builder
	b.WriteString(`#!/bin/sh
# confidisk lab /init (generated)
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t securityfs securityfs /sys/kernel/security
echo "LAB-INIT $(cut -d' ' -f1 /proc/uptime)"
. /lab/preamble.sh
`)
	for _, p := range load {
		fmt.Fprintf(&b, "lab_load %s %s\n", initrd.ModuleName(p), p)
	}
	// A machine with UserNet has eth0 on QEMU's user network: the host's
	// loopback is 10.0.2.2 from the guest.
	b.WriteString(`if [ -e /sys/class/net/eth0 ]; then
	ip link set lo up
	ip link set eth0 up
	ip addr add ` + GuestIP + `/24 dev eth0
	ip route add default via ` + HostIP + `
fi
cd /root
( . /lab/scenario.sh )
_rc=$?
cd /
sync
echo "LAB-DONE $_rc"
poweroff -f
sleep 10
echo o >/proc/sysrq-trigger
`)
	return b.String()
}
