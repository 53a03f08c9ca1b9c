package broker

import (
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// bucket is one client's token bucket.
type bucket struct {
	tokens float64
	last   time.Time
}

// rateLimiter is a token bucket per client address: rate requests a second,
// bursts of burst. It tracks at most maxClients addresses; when full it
// forgets the clients whose buckets have refilled (idle ones), and if none
// has, refuses new clients until some have.
type rateLimiter struct {
	rate       float64
	burst      float64
	maxClients int

	mu      sync.Mutex
	clients map[string]*bucket
}

func newRateLimiter(rate float64, burst, maxClients int) *rateLimiter {
	return &rateLimiter{rate: rate, burst: float64(burst), maxClients: maxClients, clients: map[string]*bucket{}}
}

// allow takes a token for client, or says how long until one is there.
func (l *rateLimiter) allow(client string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.clients[client]
	if b == nil {
		if len(l.clients) >= l.maxClients && !l.sweep(now) {
			return false, time.Second
		}
		b = &bucket{tokens: l.burst, last: now}
		l.clients[client] = b
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(l.burst, b.tokens+el*l.rate)
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}

// sweep forgets clients whose bucket would be full by now; it reports
// whether there is room for a new one.
func (l *rateLimiter) sweep(now time.Time) bool {
	for k, b := range l.clients {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.clients, k)
		}
	}
	return len(l.clients) < l.maxClients
}

// clientAddr is the host part of the request's remote address: the
// per-client limit counts addresses, not connections.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// retryAfter is a Retry-After value in whole seconds, at least 1.
func retryAfter(d time.Duration) string {
	return strconv.FormatInt(max(1, int64(math.Ceil(d.Seconds()))), 10)
}

// limitListener accepts at most n connections at a time: Accept waits
// while n are open (the kernel's backlog holds the rest).
type limitListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// LimitListener returns a listener that keeps at most n connections open.
func LimitListener(ln net.Listener, n int) net.Listener {
	return &limitListener{Listener: ln, sem: make(chan struct{}, n), done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

// Close closes the listener and wakes an Accept waiting for a slot.
func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
