package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/confidisk/confidisk/broker/store"
)

// Defaults of [Config].
const (
	DefaultNonceTTL          = 5 * time.Minute
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 15 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
	DefaultShutdownTimeout   = 10 * time.Second
	DefaultStoreTimeout      = 10 * time.Second
	DefaultRateLimit         = 20
	DefaultRateBurst         = 40
	DefaultMaxClients        = 65536
	DefaultMaxInFlight       = 128
	DefaultMaxConnections    = 1024
	maxHeaderBytes           = 64 << 10
	nonceJanitorInterval     = time.Minute
)

// Config configures a [Server]. Store, Verifier and Logger are required.
type Config struct {
	// Store keeps nonces, volumes, epochs and keys.
	Store store.Store
	// Verifier checks guest evidence.
	Verifier Verifier
	// Logger receives one line per request and every internal error.
	Logger *slog.Logger
	// TLS is the listener's configuration: certificate, and ClientCAs (the
	// operator CA) with ClientAuth tls.VerifyClientCertIfGiven. Nil serves
	// plain HTTP, where every operator endpoint refuses (tests only).
	TLS *tls.Config
	// KEK is the 32-byte key-encryption key sealing stored volume keys. Nil
	// disables the key endpoints (503).
	KEK []byte
	// NonceTTL is how long an issued nonce stays valid (DefaultNonceTTL).
	NonceTTL time.Duration
	// NonceKey (32 bytes) authenticates the stateless nonces; replicas that
	// share it accept each other's nonces. Nil derives it from KEK (so
	// replicas sharing the kek file share it), or picks a random one when
	// KEK is nil too.
	NonceKey []byte
	// RateLimit is each client address's sustained rate (requests per
	// second; DefaultRateLimit; negative: no limit) and RateBurst its burst
	// (DefaultRateBurst). Operators and GET /healthz are not limited.
	// Beyond it the answer is 429 with Retry-After.
	RateLimit float64
	RateBurst int
	// MaxClients bounds the addresses the rate limit tracks
	// (DefaultMaxClients).
	MaxClients int
	// MaxInFlight caps the requests being answered at once
	// (DefaultMaxInFlight); beyond it the answer is 429 with Retry-After.
	MaxInFlight int
	// MaxConnections caps the open connections of [Server.Serve]
	// (DefaultMaxConnections); further clients wait in the kernel's backlog.
	MaxConnections int
	// MaxBodyBytes limits request bodies (DefaultMaxBodyBytes).
	MaxBodyBytes int64
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout cut off
	// slow clients (see net/http.Server; defaults above).
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// ShutdownTimeout bounds the graceful shutdown (DefaultShutdownTimeout).
	ShutdownTimeout time.Duration
	// StoreTimeout bounds each request's store and verifier work
	// (DefaultStoreTimeout).
	StoreTimeout time.Duration
	// Now returns the current time (time.Now).
	Now func() time.Time
}

// Server is the broker's HTTP API. Create it with [New]; serve it with
// [Server.Serve] or use [Server.Handler] directly.
type Server struct {
	cfg      Config
	log      *slog.Logger
	metrics  *metrics
	handler  http.Handler
	ready    atomic.Bool
	nonces   *nonceMinter
	limiter  *rateLimiter // nil: no per-client limit
	inFlight chan struct{}
}

// New checks cfg, fills in defaults and returns a Server.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("new broker: no store")
	case cfg.Verifier == nil:
		return nil, errors.New("new broker: no verifier")
	case cfg.Logger == nil:
		return nil, errors.New("new broker: no logger")
	case cfg.KEK != nil && len(cfg.KEK) != kekSize:
		return nil, fmt.Errorf("new broker: key-encryption key is %d bytes, want %d", len(cfg.KEK), kekSize)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.NonceTTL, DefaultNonceTTL)
	def(&cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&cfg.ReadTimeout, DefaultReadTimeout)
	def(&cfg.WriteTimeout, DefaultWriteTimeout)
	def(&cfg.IdleTimeout, DefaultIdleTimeout)
	def(&cfg.ShutdownTimeout, DefaultShutdownTimeout)
	def(&cfg.StoreTimeout, DefaultStoreTimeout)
	defaults(&cfg)
	if cfg.NonceKey == nil {
		k, err := nonceKey(cfg.KEK)
		if err != nil {
			return nil, fmt.Errorf("new broker: %w", err)
		}
		cfg.NonceKey = k
	}
	if len(cfg.NonceKey) != nonceKeySize {
		return nil, fmt.Errorf("new broker: nonce key is %d bytes, want %d", len(cfg.NonceKey), nonceKeySize)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, metrics: newMetrics(cfg.Now()),
		nonces: &nonceMinter{key: cfg.NonceKey, ttl: cfg.NonceTTL}, inFlight: make(chan struct{}, cfg.MaxInFlight)}
	if cfg.RateLimit > 0 {
		s.limiter = newRateLimiter(cfg.RateLimit, cfg.RateBurst, cfg.MaxClients)
	}
	s.handler = s.routes()
	s.ready.Store(true)
	return s, nil
}

func defaults(cfg *Config) {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RateLimit == 0 {
		cfg.RateLimit = DefaultRateLimit
	}
	defInt := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defInt(&cfg.RateBurst, DefaultRateBurst)
	defInt(&cfg.MaxClients, DefaultMaxClients)
	defInt(&cfg.MaxInFlight, DefaultMaxInFlight)
	defInt(&cfg.MaxConnections, DefaultMaxConnections)
}

// Handler returns the HTTP handler with every endpoint, for tests and for
// embedding the broker into another server.
func (s *Server) Handler() http.Handler { return s.handler }

// HTTPServer returns an http.Server for the broker with its timeouts and
// TLS configuration set.
func (s *Server) HTTPServer() *http.Server {
	return &http.Server{
		Handler:           s.handler,
		TLSConfig:         s.cfg.TLS,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
}

// Serve answers requests on ln (TLS when [Config.TLS] is set) until ctx is
// cancelled, then shuts down gracefully: /healthz turns 503, the listener
// closes, and requests in flight get [Config.ShutdownTimeout] to finish.
// It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ln = LimitListener(ln, s.cfg.MaxConnections)
	srv := s.HTTPServer()
	srv.BaseContext = func(net.Listener) context.Context { return context.WithoutCancel(ctx) }
	errc := make(chan error, 1)
	go func() {
		var err error
		if s.cfg.TLS != nil {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		errc <- err
	}()
	janitorDone := make(chan struct{})
	janitorCtx, stopJanitor := context.WithCancel(ctx)
	go func() {
		defer close(janitorDone)
		s.pruneNonces(janitorCtx)
	}()
	defer func() {
		stopJanitor()
		<-janitorDone
	}()
	s.ready.Store(true)
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	s.ready.Store(false)
	s.log.Info("shutting down", "grace", s.cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		srv.Close()
		err = fmt.Errorf("graceful shutdown: %w", err)
	}
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = fmt.Errorf("serve: %w", serr)
	}
	return err
}

// pruneNonces forgets expired used nonces every minute until ctx ends.
func (s *Server) pruneNonces(ctx context.Context) {
	t := time.NewTicker(nonceJanitorInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
		n, err := s.cfg.Store.PruneNonces(pctx, s.cfg.Now())
		cancel()
		if err != nil {
			s.log.Warn("prune nonces", "err", err)
		} else if n > 0 {
			s.log.Debug("pruned nonces", "count", n)
		}
	}
}
