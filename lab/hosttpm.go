package lab

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"
)

// HostTPM gives the host's view of a powered-off machine's vTPM: swtpm run
// on its state directory with a command socket, as a host that controls the
// vTPM state could. It is for attack scenarios and the demo; stop ends swtpm
// (before the machine boots again: swtpm locks the state).
func (m *Machine) HostTPM() (t transport.TPMCloser, stop func(), err error) {
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		return nil, nil, &MissingToolError{Tool: "swtpm", Package: "swtpm", Reason: err.Error()}
	}
	sockDir, err := os.MkdirTemp("", "host-tpm-")
	if err != nil {
		return nil, nil, err
	}
	sock := filepath.Join(sockDir, "tpm.sock")
	cmd := exec.Command(bin, "socket", "--tpm2",
		"--tpmstate", "dir="+m.TPMStateDir(),
		"--server", "type=unixio,path="+sock,
		"--ctrl", "type=unixio,path="+sock+".ctrl",
		"--flags", "not-need-init,startup-clear")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(sockDir)
		return nil, nil, fmt.Errorf("start swtpm: %w", err)
	}
	kill := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		os.RemoveAll(sockDir)
	}
	// The socket file appears at bind(), before swtpm listens: wait until a
	// connection is accepted (the transport dials on its first command).
	for deadline := time.Now().Add(10 * time.Second); !listening(sock); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			kill()
			return nil, nil, fmt.Errorf("swtpm did not listen on %s within 10s", sock)
		}
	}
	tc, err := linuxudstpm.Open(sock)
	if err != nil {
		kill()
		return nil, nil, err
	}
	return tc, func() { tc.Close(); kill() }, nil
}

// listening reports whether a Unix socket accepts connections.
func listening(sock string) bool {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
