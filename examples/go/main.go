// route-tag: a sipbus session supplement in Go.
//
// It tags every INVITE that sipbus sends with `X-Route-Tag: <ROUTE_TAG>`,
// and uses the session datastore to log how long each call lasted. It joins
// sipbus by itself through the extension registry (see registry.go).
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"

	ext "sipbus.example/gen/extensionv1"
	session "sipbus.example/gen/sessionv1"
)

// startedKey is the datastore entry Begin writes and End reads.
const startedKey = "started"

// supplement implements sipbus.session.v1.SessionSupplement. Embedding the
// generated Unimplemented type is required by protoc-gen-go-grpc, but every
// RPC is overridden below: sipbus must never get UNIMPLEMENTED.
type supplement struct {
	session.UnimplementedSessionSupplementServer
	tag string
}

func (s *supplement) Begin(_ context.Context, req *session.BeginRequest) (*session.BeginReply, error) {
	// A reply with data replaces all of this supplement's values, so carry
	// over whatever is already there.
	values := map[string][]byte{}
	for k, v := range req.GetData().GetValues() {
		values[k] = v
	}
	values[startedKey] = []byte(strconv.FormatInt(time.Now().UnixMilli(), 10))
	return &session.BeginReply{Data: &session.Datastore{Values: values}}, nil
}

func (s *supplement) End(_ context.Context, req *session.EndRequest) (*session.EndReply, error) {
	id := req.GetSession().GetId()
	raw, ok := req.GetData().GetValues()[startedKey]
	started, err := strconv.ParseInt(string(raw), 10, 64)
	if !ok || err != nil {
		// End comes also for calls that failed early; Begin's data may be
		// missing. Nothing to measure then.
		log.Printf("session %q ended (no start time stored)", id)
		return &session.EndReply{}, nil
	}
	d := time.Since(time.UnixMilli(started)).Round(time.Millisecond)
	log.Printf("session %q ended after %s (%s -> %s)", id, d,
		req.GetSession().GetCaller(), req.GetSession().GetCallee())
	return &session.EndReply{}, nil
}

func (s *supplement) IncomingRequest(context.Context, *session.RequestEvent) (*session.RequestVerdict, error) {
	// No stop: the request goes on; no data: the datastore stays as is.
	return &session.RequestVerdict{}, nil
}

func (s *supplement) IncomingResponse(context.Context, *session.ResponseEvent) (*session.ResponseReply, error) {
	return &session.ResponseReply{}, nil
}

func (s *supplement) OutgoingRequest(_ context.Context, ev *session.OutgoingEvent) (*session.OutgoingReply, error) {
	// Registered with the filter ["INVITE"], but sipbus's configuration
	// could widen it: check the method ourselves. Method tokens are
	// case-sensitive (RFC 3261 7.1).
	if ev.GetMessage().GetRequest().GetMethod() != "INVITE" {
		return &session.OutgoingReply{}, nil
	}
	// REPLACE, not ADD: sipbus may call this more than once for one
	// message (a retried send), and the header must still appear once.
	return &session.OutgoingReply{Edits: []*session.HeaderEdit{{
		Op:    session.HeaderEdit_OP_REPLACE,
		Name:  "X-Route-Tag",
		Value: s.tag,
	}}}, nil
}

func (s *supplement) OutgoingResponse(context.Context, *session.OutgoingEvent) (*session.OutgoingReply, error) {
	return &session.OutgoingReply{}, nil
}

func (s *supplement) Timer(context.Context, *session.TimerEvent) (*session.TimerReply, error) {
	// This supplement never arms its timer; answer neutrally all the same.
	return &session.TimerReply{}, nil
}

func main() {
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	log.SetPrefix("route-tag: ")
	log.SetOutput(os.Stderr) // stdout is only for the `registered` line

	cfg, err := loadConfig()
	if err != nil {
		log.Printf("configuration: %v", err)
		os.Exit(2)
	}

	lis, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		log.Printf("listen on %s: %v", cfg.listen, err)
		os.Exit(1)
	}
	bound := lis.Addr().(*net.TCPAddr)
	address := cfg.advertise
	if address == "" {
		address = advertiseFor(cfg.listen, bound.Port)
	}

	srv := grpc.NewServer()
	session.RegisterSessionSupplementServer(srv, &supplement{tag: cfg.tag})
	go func() {
		if err := srv.Serve(lis); err != nil {
			log.Printf("serve: %v", err)
			os.Exit(1)
		}
	}()
	log.Printf("serving sipbus.session.v1.SessionSupplement on %s (advertised as %s), tag %q",
		bound, address, cfg.tag)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	reg, err := newRegistration(cfg, address)
	if err != nil {
		log.Printf("registry client: %v", err)
		os.Exit(1)
	}
	// keep registers, renews, and deregisters once ctx ends (a signal).
	done := make(chan struct{})
	go func() {
		reg.keep(ctx)
		close(done)
	}()

	<-ctx.Done()
	log.Printf("signal received, shutting down")
	<-done
	reg.close()

	// Let calls in flight finish, but do not hang on a slow peer.
	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(2 * time.Second):
		srv.Stop()
	}
	os.Exit(0)
}

// config is everything read from the environment.
type config struct {
	registry     string // host:port
	token        string
	listen       string
	advertise    string
	name         string
	priority     *int32
	leaseSeconds uint32
	onFailure    ext.FailurePolicy
	rejectStatus uint32
	timeoutMs    uint32
	tag          string
}

func loadConfig() (*config, error) {
	c := &config{
		registry:  env("SIPBUS_REGISTRY", "http://127.0.0.1:50051"),
		token:     os.Getenv("SIPBUS_REGISTRY_TOKEN"),
		listen:    env("LISTEN", "127.0.0.1:0"),
		advertise: os.Getenv("ADVERTISE"),
		name:      env("NAME", "route-tag"),
		tag:       env("ROUTE_TAG", "go"),
	}
	// grpc-go dials host:port, not URLs.
	c.registry = strings.TrimPrefix(strings.TrimPrefix(c.registry, "http://"), "https://")
	c.registry = strings.TrimSuffix(c.registry, "/")

	if v := os.Getenv("PRIORITY"); v != "" {
		p, err := strconv.ParseInt(v, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("PRIORITY=%q: %v", v, err)
		}
		p32 := int32(p)
		c.priority = &p32
	}
	var err error
	if c.leaseSeconds, err = envUint("LEASE_SECONDS", 30); err != nil {
		return nil, err
	}
	if c.rejectStatus, err = envUint("REJECT_STATUS", 0); err != nil {
		return nil, err
	}
	if c.timeoutMs, err = envUint("TIMEOUT_MS", 0); err != nil {
		return nil, err
	}
	switch v := strings.ToLower(env("ON_FAILURE", "open")); v {
	case "open":
		c.onFailure = ext.FailurePolicy_FAIL_OPEN
	case "closed":
		c.onFailure = ext.FailurePolicy_FAIL_CLOSED
	default:
		return nil, fmt.Errorf("ON_FAILURE=%q: want open or closed", v)
	}
	return c, nil
}

// advertiseFor builds the default ADVERTISE from the listen host and the
// port actually bound (LISTEN may ask for port 0).
func advertiseFor(listen string, port int) string {
	host, _, err := net.SplitHostPort(listen)
	if err != nil || host == "" || net.ParseIP(host).IsUnspecified() {
		// 0.0.0.0 or [::] is no address to call; loopback is the only
		// guess that works on one machine. Set ADVERTISE elsewhere.
		log.Printf("LISTEN %q has no callable host: advertising 127.0.0.1; set ADVERTISE", listen)
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(port))
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func envUint(key string, def uint32) (uint32, error) {
	v := os.Getenv(key)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%s=%q: %v", key, v, err)
	}
	return uint32(n), nil
}
