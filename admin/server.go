package admin

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultAddr is the admin listener of cmd/sipasync.
const DefaultAddr = "127.0.0.1:9060"

// MaxBody bounds a JSON-RPC request body.
const MaxBody = 1 << 20

// ErrRemoteNeedsToken refuses a non-loopback admin address without a token.
var ErrRemoteNeedsToken = errors.New("admin: a non-loopback address needs a token (--admin-token)")

// Options configure a Server.
type Options struct {
	// Addr is host:port to listen on; port 0 picks a free one (see Addr).
	Addr string
	// Token, if set, must come as "Authorization: Bearer TOKEN" on every
	// request. A non-loopback Addr requires one.
	Token    string
	Gatherer prometheus.Gatherer // served on /metrics; nil: no /metrics
	RPC      *RPC                // served on POST /rpc; nil: no /rpc
	Logger   *slog.Logger
}

// Server is a running admin listener.
type Server struct {
	opts Options
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
}

// IsLoopback reports whether host (a name or an IP) is a loopback address.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// Listen binds o.Addr and serves it until Shutdown. A port in use or a
// malformed address is an error naming the address.
func Listen(o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	host, _, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return nil, fmt.Errorf("admin: address %q: %w", o.Addr, err)
	}
	if !IsLoopback(host) && o.Token == "" {
		return nil, fmt.Errorf("%w: %q", ErrRemoteNeedsToken, o.Addr)
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("admin: listen %s: %w", o.Addr, err)
	}
	s := &Server{opts: o, ln: ln, done: make(chan struct{})}
	mux := http.NewServeMux()
	if o.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{ErrorLog: slogErrorLog{o.Logger}}))
	}
	if o.RPC != nil {
		mux.HandleFunc("POST /rpc", s.serveRPC)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	s.srv = &http.Server{Handler: s.auth(mux), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		IdleTimeout: 60 * time.Second}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			o.Logger.Error("admin listener stopped", "error", err)
		}
	}()
	return s, nil
}

// Addr returns the address bound (with the port chosen for port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Shutdown stops the listener and waits for requests in flight or ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}

func (s *Server) auth(next http.Handler) http.Handler {
	if s.opts.Token == "" {
		return next
	}
	want := []byte("Bearer " + s.opts.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sipasync"`)
			http.Error(w, "admin: missing or wrong bearer token", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) serveRPC(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		http.Error(w, "admin: request body: "+err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	out := s.opts.RPC.Handle(r.Context(), body)
	if out == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(out, '\n'))
}

type slogErrorLog struct{ l *slog.Logger }

func (e slogErrorLog) Println(v ...any) {
	e.l.Error("metrics: "+fmt.Sprint(v...), "component", "admin")
}
