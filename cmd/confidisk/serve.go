//go:build !confidisk_guest

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/confidisk/confidisk/attest"
	"github.com/confidisk/confidisk/attest/snp"
	"github.com/confidisk/confidisk/attest/tdx"
	"github.com/confidisk/confidisk/broker"
	"github.com/confidisk/confidisk/broker/api"
	"github.com/confidisk/confidisk/broker/store"
	"github.com/confidisk/confidisk/broker/store/bolt"
	"github.com/confidisk/confidisk/broker/store/postgres"
)

// insecureTestEnv must be 1 for --verifier insecure-test.
const insecureTestEnv = "CONFIDISK_INSECURE_TEST_VERIFIER"

type serveOptions struct {
	listen, data, storeKind, postgresURL string
	tlsCert, tlsKey, operatorCA          string
	verifier, policy, logLevel           string
	metricsListen                        string
	rateLimit                            float64
	rateBurst, maxInFlight, maxConns     int
}

// The real verifier is the broker's: attest implements the broker's
// interfaces without linking the broker's server.
var _ interface {
	broker.Verifier
	broker.CreationVerifier
} = (*attest.Validator)(nil)

func newServeCmd() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve [--listen ADDR] [--data DIR] [--store bolt|postgres] [--policy FILE]",
		Short: "Run the verifier and key broker (HTTPS API for guests and operators)",
		Long: `Runs the confidisk verifier and key broker: guests prove what they run with
fresh attestation evidence, register creation proofs of self-encrypted volumes,
advance each volume's freshness epoch and receive the keys of pre-encrypted
volumes; operators (mutual TLS) register volumes and provision keys.

With no flags it listens on https://127.0.0.1:8443 with the embedded store
(DATA/broker.db) in the data directory, $XDG_STATE_HOME/confidisk or
~/.local/state/confidisk. On first start it creates in the data directory:

  tls/server.crt, server.key          self-signed broker certificate (clients pin server.crt)
  tls/operator-ca.crt, .key           CA for operator client certificates
  tls/operator.crt, operator.key      a first operator client certificate
  kek                                 key-encryption key for stored volume keys

--tls-cert/--tls-key/--operator-ca use your own certificates instead. With
--store postgres several replicas share one database (--postgres-url); give
them the same kek file and certificates (the kek also keys the stateless
nonces, so that a nonce one replica issued is accepted by every replica,
once).

Under abuse: each client address gets --rate-limit requests a second
(bursts of --rate-burst), at most --max-in-flight requests are answered at
once (both answer 429 with Retry-After beyond), and at most
--max-connections connections are open. GET /metrics and GET
/v1/volumes/{uuid} need the operator certificate; --metrics-listen ADDR
serves /metrics and /healthz without TLS on a separate address for the
monitoring network.

Evidence is checked by --verifier tpm against the reference values in
--policy FILE (a vTPM quote, systemd's userspace measurement log, the
firmware's event log, and a SEV-SNP report or TDX quote verified offline
against AMD's or Intel's root, which binds the vTPM's attestation key;
format in docs/attestation.md). Without --policy the
broker refuses all evidence (--verifier none). SIGHUP reloads the policy file
(e.g. after adding a new image's reference values from confidisk image build
--policy, or retiring an old one); a file that does not load is logged and
the previous policy stays in force.

It prints "confidisk serve: listening on https://ADDR ..." when ready; GET
/healthz answers 200 then. SIGINT or SIGTERM shut it down gracefully.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runServe(ctx, cmd, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "127.0.0.1:8443", "address to listen on (port 0 picks a free port)")
	f.StringVar(&o.data, "data", "", "data directory (default $XDG_STATE_HOME/confidisk or ~/.local/state/confidisk)")
	f.StringVar(&o.storeKind, "store", "bolt", "store: bolt (embedded file DATA/broker.db) or postgres")
	f.StringVar(&o.postgresURL, "postgres-url", "", "PostgreSQL connection URL for --store postgres (e.g. postgres://user@host/db)")
	f.StringVar(&o.tlsCert, "tls-cert", "", "server certificate (PEM); default: generated DATA/tls/server.crt")
	f.StringVar(&o.tlsKey, "tls-key", "", "server private key (PEM) for --tls-cert")
	f.StringVar(&o.operatorCA, "operator-ca", "", "CA (PEM) that issues operator client certificates; default: DATA/tls/operator-ca.crt")
	f.StringVar(&o.verifier, "verifier", "none", "evidence verifier: tpm (vTPM quote + logs checked against --policy; the default when --policy is given) or none (refuse all evidence)")
	f.StringVar(&o.policy, "policy", "", "reference-value policy (JSON, see docs/attestation.md) for --verifier tpm")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.StringVar(&o.metricsListen, "metrics-listen", "", "also serve GET /metrics and /healthz without TLS on this address (the monitoring network only)")
	f.Float64Var(&o.rateLimit, "rate-limit", broker.DefaultRateLimit, "requests per second per client address (0: no limit; operators are not limited)")
	f.IntVar(&o.rateBurst, "rate-burst", broker.DefaultRateBurst, "burst of requests per client address")
	f.IntVar(&o.maxInFlight, "max-in-flight", broker.DefaultMaxInFlight, "requests answered at once; more get 429")
	f.IntVar(&o.maxConns, "max-connections", broker.DefaultMaxConnections, "open connections at most; more wait in the listen backlog")
	return cmd
}

func defaultDataDir() (string, error) {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "confidisk"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no --data and no home directory: %w", err)
	}
	return filepath.Join(home, ".local", "state", "confidisk"), nil
}

// teeVerifiers are the SEV-SNP and TDX verifiers with the policy's
// reference values, trusting AMD's and Intel's roots, offline.
func teeVerifiers(p *attest.Policy) (map[string]attest.TEEVerifier, error) {
	var so snp.Options
	if p.SEVSNP != nil {
		so.Measurements = p.SEVSNP.Measurements
	}
	sv, err := snp.NewVerifier(so)
	if err != nil {
		return nil, err
	}
	var to tdx.Options
	if p.TDX != nil {
		to.MRTDs = p.TDX.MRTDs
	}
	tv, err := tdx.NewVerifier(to)
	if err != nil {
		return nil, err
	}
	return map[string]attest.TEEVerifier{attest.TEESEVSNP: sv, attest.TEETDX: tv}, nil
}

// refuseVerifier stands in until a real verifier is configured.
type refuseVerifier struct{}

func (refuseVerifier) Verify(context.Context, []byte, []byte) (*api.Claims, error) {
	return nil, errors.New("this broker has no attestation verifier configured")
}

func runServe(ctx context.Context, cmd *cobra.Command, o serveOptions) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return usageError{fmt.Errorf("--log-level %q: %w", o.logLevel, err)}
	}
	log := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))

	if o.policy != "" && !cmd.Flags().Changed("verifier") {
		o.verifier = "tpm"
	}
	verifier, err := serveVerifier(o, log)
	if err != nil {
		return err
	}
	if o.rateLimit < 0 || o.rateBurst < 1 || o.maxInFlight < 1 || o.maxConns < 1 {
		return usageError{errors.New("--rate-limit must be at least 0, --rate-burst, --max-in-flight and --max-connections at least 1")}
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return usageError{errors.New("--tls-cert and --tls-key go together")}
	}
	host, _, err := net.SplitHostPort(o.listen)
	if err != nil {
		return usageError{fmt.Errorf("--listen %q: want HOST:PORT: %w", o.listen, err)}
	}
	data := o.data
	if data == "" {
		if data, err = defaultDataDir(); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(data, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}

	st, storeDesc, err := openStore(ctx, o, data)
	if err != nil {
		return err
	}
	defer st.Close()

	tlsCfg, err := serveTLS(o, data, host, log)
	if err != nil {
		return err
	}
	kek, err := broker.LoadOrCreateKEK(filepath.Join(data, "kek"))
	if err != nil {
		return err
	}
	srv, err := broker.New(brokerConfig(o, st, verifier, log, tlsCfg, kek))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	stopMetrics, err := serveMetrics(ctx, o.metricsListen, srv, log)
	if err != nil {
		ln.Close()
		return err
	}
	defer stopMetrics()
	if sw, ok := verifier.(*attest.Switch); ok {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go reloadPolicy(ctx, hup, o.policy, sw, log)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "confidisk serve: listening on https://%s (store: %s, data: %s)\n", ln.Addr(), storeDesc, data)
	if err := srv.Serve(ctx, ln); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// loadValidator reads the policy file and makes its validator.
func loadValidator(path string, log *slog.Logger) (*attest.Validator, error) {
	p, err := attest.LoadPolicy(path)
	if err != nil {
		return nil, err
	}
	tee, err := teeVerifiers(p)
	if err != nil {
		return nil, err
	}
	v, err := attest.NewValidator(p, attest.ValidatorOptions{TEE: tee})
	if err != nil {
		return nil, err
	}
	if len(p.AttestationKeys) == 0 && !p.RequireTEE {
		log.Warn("the policy pins no attestation keys and requires no SEV-SNP/TDX report: any TPM, even a software one, that reproduces the PCR values can attest; add attestation_keys to the policy",
			"policy", path)
	}
	log.Info("attestation policy loaded", "policy", path, "pcrs", len(p.PCRs), "root_hashes", len(p.RootHashes), "attestation_keys", len(p.AttestationKeys))
	return v, nil
}

// reloadPolicy reloads the policy file into sw each time reload receives
// (SIGHUP), until ctx ends: a new image's reference values are added, an
// old one's retired, without a restart. A file that does not load (missing,
// malformed, no PCR pinned) leaves the current policy in force and is
// logged: a bad edit never leaves the broker accepting everything or
// nothing.
func reloadPolicy(ctx context.Context, reload <-chan os.Signal, path string, sw *attest.Switch, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-reload:
			v, err := loadValidator(path, log)
			if err != nil {
				log.Error("policy reload refused; the previous policy stays in force", "policy", path, "error", err)
				continue
			}
			sw.Set(v)
			log.Info("policy reloaded", "policy", path)
		}
	}
}

// serveVerifier is the verifier --verifier and --policy ask for.
func serveVerifier(o serveOptions, log *slog.Logger) (broker.Verifier, error) {
	if o.policy != "" && o.verifier != "tpm" {
		return nil, usageError{fmt.Errorf("--policy is for --verifier tpm, not %s", o.verifier)}
	}
	var verifier broker.Verifier
	switch o.verifier {
	case "tpm":
		if o.policy == "" {
			return nil, usageError{errors.New("--verifier tpm needs --policy FILE (reference values written by the image build; see docs/attestation.md)")}
		}
		v, err := loadValidator(o.policy, log)
		if err != nil {
			return nil, err
		}
		sw := &attest.Switch{}
		sw.Set(v)
		verifier = sw
	case "none":
		verifier = refuseVerifier{}
	case "insecure-test":
		// The broker's own process tests (kill -9 crash test, load
		// benchmark) need a verifier that accepts forged evidence. It is
		// not in --help and needs the environment to say so as well.
		v, built := insecureVerifier()
		if !built {
			return nil, usageError{errors.New("--verifier insecure-test accepts forged evidence: this binary was built without it (go build -tags confidisk_insecure, for the broker's own tests)")}
		}
		if os.Getenv(insecureTestEnv) != "1" {
			return nil, usageError{fmt.Errorf("--verifier insecure-test accepts forged evidence and is for the broker's own tests: it needs %s=1 in the environment", insecureTestEnv)}
		}
		verifier = v
		log.Warn("INSECURE: --verifier insecure-test accepts forged evidence; use it only in tests")
	default:
		return nil, usageError{fmt.Errorf("--verifier %q: want tpm or none", o.verifier)}
	}
	return verifier, nil
}

// serveTLS is the broker's TLS configuration: the given certificate and
// operator CA, or ones generated (once) in the data directory.
func serveTLS(o serveOptions, data, host string, log *slog.Logger) (*tls.Config, error) {
	var err error
	files := broker.TLSPaths(filepath.Join(data, "tls"))
	if o.tlsCert == "" || o.operatorCA == "" {
		var generated bool
		files, generated, err = broker.EnsureTLS(filepath.Join(data, "tls"), []string{host}, time.Now())
		if err != nil {
			return nil, err
		}
		if generated {
			log.Info("generated TLS certificates", "dir", filepath.Dir(files.ServerCert),
				"server_cert", files.ServerCert, "operator_cert", files.OperatorCert)
		}
	}
	certFile, keyFile, caFile := files.ServerCert, files.ServerKey, files.OperatorCA
	if o.tlsCert != "" {
		certFile, keyFile = o.tlsCert, o.tlsKey
	}
	if o.operatorCA != "" {
		caFile = o.operatorCA
	}
	tlsCfg, err := broker.ServerTLSConfig(certFile, keyFile, caFile)
	if err != nil {
		return nil, err
	}
	warnHost(log, certFile, host)
	return tlsCfg, nil
}

func brokerConfig(o serveOptions, st store.Store, v broker.Verifier, log *slog.Logger, tlsCfg *tls.Config, kek []byte) broker.Config {
	rate := o.rateLimit
	if rate == 0 {
		rate = -1 // broker.Config: negative is no limit
	}
	return broker.Config{Store: st, Verifier: v, Logger: log, TLS: tlsCfg, KEK: kek,
		RateLimit: rate, RateBurst: o.rateBurst, MaxInFlight: o.maxInFlight, MaxConnections: o.maxConns}
}

// serveMetrics serves srv's metrics handler on addr (nothing when addr is
// empty) until the returned function is called.
func serveMetrics(ctx context.Context, addr string, srv *broker.Server, log *slog.Logger) (func(), error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listen: %w", err)
	}
	hs := &http.Server{Handler: srv.MetricsHandler(), ReadHeaderTimeout: broker.DefaultReadHeaderTimeout,
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) }}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(broker.LimitListener(ln, 16)); !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener", "err", err)
		}
	}()
	log.Info("metrics listening", "addr", ln.Addr().String())
	return func() {
		hs.Close()
		<-done
	}, nil
}

func openStore(ctx context.Context, o serveOptions, data string) (store.Store, string, error) {
	switch o.storeKind {
	case "bolt":
		if o.postgresURL != "" {
			return nil, "", usageError{errors.New("--postgres-url needs --store postgres")}
		}
		path := filepath.Join(data, "broker.db")
		st, err := bolt.Open(path, 5*time.Second)
		if err != nil {
			return nil, "", fmt.Errorf("%w (is another confidisk serve using this data directory?)", err)
		}
		return st, "bolt " + path, nil
	case "postgres":
		if o.postgresURL == "" {
			return nil, "", usageError{errors.New("--store postgres needs --postgres-url")}
		}
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		st, err := postgres.Open(octx, o.postgresURL)
		if err != nil {
			return nil, "", err
		}
		return st, "postgres", nil
	}
	return nil, "", usageError{fmt.Errorf("--store %q: want bolt or postgres", o.storeKind)}
}

// warnHost logs when the server certificate does not name the listen host.
func warnHost(log *slog.Logger, certFile, host string) {
	if host == "" || net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified() {
		return
	}
	raw, err := os.ReadFile(certFile)
	if err != nil {
		return
	}
	b, _ := pem.Decode(raw)
	if b == nil {
		return
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return
	}
	if err := c.VerifyHostname(host); err != nil {
		log.Warn("server certificate does not name the listen host; clients connecting by that name will refuse it",
			"cert", certFile, "host", host, "err", err)
	}
}
