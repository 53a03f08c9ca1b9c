// Package tpmtest runs swtpm for tests: a real TPM 2.0 emulator in a
// temporary directory, reached over unix sockets, that can be "rebooted"
// (PCRs reset, NV kept). It is the test double for every TPM-using package.
package tpmtest

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"

	"github.com/confidisk/confidisk/internal/testutil"
)

// SWTPM is a running swtpm with its state in a test's temporary directory.
type SWTPM struct {
	t    testing.TB
	dir  string
	sock string
	ctrl string
	cmd  *exec.Cmd
}

// Start launches swtpm (unix data and control sockets, flags
// not-need-init,startup-clear) in t.TempDir() and stops it when the test
// ends. A missing swtpm is reported through testutil.Missing.
func Start(t testing.TB) *SWTPM {
	t.Helper()
	bin := testutil.LookPath(t, "swtpm", "swtpm")
	dir, err := filepath.Abs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// swtpm splits its options at commas, tpm2-tss TCTI strings at '=' and
	// ':', and a unix socket path has at
	// most 107 bytes; subtest names can break both, so such a directory is
	// replaced by a short one of our own.
	if strings.ContainsAny(dir, ",=:") || len(dir) > 80 {
		if dir, err = os.MkdirTemp("", "swtpm-"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	s := &SWTPM{t: t, dir: dir, sock: filepath.Join(dir, "tpm.sock"), ctrl: filepath.Join(dir, "tpm.sock.ctrl")}
	s.start(bin)
	return s
}

func (s *SWTPM) start(bin string) {
	s.t.Helper()
	// swtpm must get absolute paths: with --daemon it changes to / and a
	// relative state directory makes every command fail (go-deps-and-style.md §1.1).
	cmd := exec.Command(bin, "socket", "--tpm2",
		"--tpmstate", "dir="+s.dir,
		"--server", "type=unixio,path="+s.sock,
		"--ctrl", "type=unixio,path="+s.ctrl,
		"--flags", "not-need-init,startup-clear")
	log, err := os.Create(filepath.Join(s.dir, "swtpm.log"))
	if err != nil {
		s.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		s.t.Fatalf("start swtpm: %v", err)
	}
	s.cmd = cmd
	s.t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		log.Close()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", s.sock); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(log.Name())
			s.t.Fatalf("swtpm did not open %s within 10 s; its output: %s", s.sock, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Path is the data socket, as used in "swtpm:PATH".
func (s *SWTPM) Path() string { return s.sock }

// Device is the --tpm option value for this swtpm.
func (s *SWTPM) Device() string { return "swtpm:" + s.sock }

// Dir is swtpm's state directory.
func (s *SWTPM) Dir() string { return s.dir }

// Open returns a connection to the TPM, closed when the test ends.
func (s *SWTPM) Open() transport.TPMCloser {
	s.t.Helper()
	t, err := linuxudstpm.Open(s.sock)
	if err != nil {
		s.t.Fatalf("open swtpm: %v", err)
	}
	s.t.Cleanup(func() { t.Close() })
	return t
}

// swtpm control channel commands (swtpm's man page swtpm-ioctls(8)).
const (
	cmdInit     = 2
	cmdShutdown = 3
)

func (s *SWTPM) control(cmd uint32, payload []byte) error {
	c, err := net.Dial("unix", s.ctrl)
	if err != nil {
		return fmt.Errorf("dial swtpm control socket: %w", err)
	}
	defer c.Close()
	msg := binary.BigEndian.AppendUint32(nil, cmd)
	msg = append(msg, payload...)
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("write control command %d: %w", cmd, err)
	}
	var res [4]byte
	if _, err := io.ReadFull(c, res[:]); err != nil {
		return fmt.Errorf("read control result %d: %w", cmd, err)
	}
	if rc := binary.BigEndian.Uint32(res[:]); rc != 0 {
		return fmt.Errorf("swtpm control command %d returned 0x%x", cmd, rc)
	}
	return nil
}

// Reboot simulates a power cycle: CMD_INIT on the control channel, then
// TPM2_Startup(TPM_SU_CLEAR). PCRs return to their reset values; NV
// indices, persistent objects and counters stay.
func (s *SWTPM) Reboot() {
	s.t.Helper()
	if err := s.control(cmdInit, make([]byte, 4)); err != nil {
		s.t.Fatalf("reboot swtpm: %v", err)
	}
	t := s.Open()
	if _, err := (tpm2.Startup{StartupType: tpm2.TPMSUClear}).Execute(t); err != nil {
		s.t.Fatalf("reboot swtpm: startup: %v", err)
	}
}
