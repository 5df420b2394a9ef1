// Joining sipbus through its extension registry
// (proto/sipbus/extension/v1/registry.proto): register, renew within the
// lease, register again when the lease lapsed, deregister on shutdown.
package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	ext "sipbus.example/gen/extensionv1"
)

const (
	retryEvery  = 2 * time.Second // register retries, and renew retries after an error
	callTimeout = 5 * time.Second
	byeTimeout  = 2 * time.Second // Deregister is best effort on the way out
)

type registration struct {
	conn    *grpc.ClientConn
	client  ext.RegistryClient
	token   string
	request *ext.RegisterRequest
}

func newRegistration(cfg *config, address string) (*registration, error) {
	// Non-blocking dial: the registry may come up after us. The short
	// reconnect backoff (default grows to 2 min) keeps the 2 s retry
	// honest once it is back.
	conn, err := grpc.Dial(cfg.registry,
		grpc.WithInsecure(),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 500 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: retryEvery},
			MinConnectTimeout: callTimeout,
		}))
	if err != nil {
		return nil, err
	}
	return &registration{
		conn:   conn,
		client: ext.NewRegistryClient(conn),
		token:  cfg.token,
		request: &ext.RegisterRequest{
			Point:        ext.Point_SESSION_SUPPLEMENT,
			Name:         cfg.name,
			Address:      address,
			Filters:      []string{"INVITE"},
			Priority:     cfg.priority, // nil: not sent, sipbus uses 100
			TimeoutMs:    cfg.timeoutMs,
			OnFailure:    cfg.onFailure,
			RejectStatus: cfg.rejectStatus,
			LeaseSeconds: cfg.leaseSeconds,
		},
	}, nil
}

// callCtx bounds one registry call and adds the bearer token, when set.
func (r *registration) callCtx(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(parent, d)
	if r.token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+r.token)
	}
	return ctx, cancel
}

// keep holds the registration until ctx ends, then deregisters.
func (r *registration) keep(ctx context.Context) {
	for {
		id, lease, ok := r.register(ctx)
		if !ok {
			return // stopped before ever registering: nothing to undo
		}
		if lapsed := r.renew(ctx, id, lease); !lapsed {
			r.deregister(id)
			return
		}
		log.Printf("lease of %s lapsed (NOT_FOUND on renew): registering again", id)
	}
}

// register retries every 2 s until it succeeds or ctx ends.
func (r *registration) register(ctx context.Context) (id string, lease uint32, ok bool) {
	for {
		cctx, cancel := r.callCtx(ctx, callTimeout)
		reply, err := r.client.Register(cctx, r.request)
		cancel()
		if err == nil {
			// The one stdout line; os.Stdout is unbuffered, so it is
			// flushed when Println returns.
			fmt.Println("registered", r.request.Name, reply.GetId(), r.request.Address)
			log.Printf("registered %s as %s, lease %d s", r.request.Name, reply.GetId(), reply.GetLeaseSeconds())
			return reply.GetId(), reply.GetLeaseSeconds(), true
		}
		if ctx.Err() != nil {
			return "", 0, false
		}
		// UNAUTHENTICATED (bad token), ALREADY_EXISTS (name taken) and
		// UNAVAILABLE (sipbus not up yet) alike: say why, try again.
		log.Printf("register with %s failed: %v (retrying in %s)", r.conn.Target(), err, retryEvery)
		if !sleep(ctx, retryEvery) {
			return "", 0, false
		}
	}
}

// renew keeps the lease alive until ctx ends (false) or the registry no
// longer knows the id (true: register again).
func (r *registration) renew(ctx context.Context, id string, lease uint32) (lapsed bool) {
	wait := renewInterval(lease)
	for {
		if !sleep(ctx, wait) {
			return false
		}
		cctx, cancel := r.callCtx(ctx, callTimeout)
		reply, err := r.client.Renew(cctx, &ext.RenewRequest{Id: id})
		cancel()
		switch {
		case err == nil:
			lease = reply.GetLeaseSeconds()
			wait = renewInterval(lease)
		case status.Code(err) == codes.NotFound:
			return true
		case ctx.Err() != nil:
			return false
		default:
			// Transient: retry sooner than a full interval, the lease is
			// still running. If it lapses meanwhile, the next answer is
			// NOT_FOUND and we register again.
			log.Printf("renew %s failed: %v", id, err)
			if wait = renewInterval(lease); wait > retryEvery {
				wait = retryEvery
			}
		}
	}
}

func (r *registration) deregister(id string) {
	// ctx has ended by now: use a fresh, short deadline.
	cctx, cancel := r.callCtx(context.Background(), byeTimeout)
	defer cancel()
	if _, err := r.client.Deregister(cctx, &ext.DeregisterRequest{Id: id}); err != nil {
		log.Printf("deregister %s: %v (the lease will lapse instead)", id, err)
		return
	}
	log.Printf("deregistered %s", id)
}

func (r *registration) close() { r.conn.Close() }

// renewInterval is a third of the granted lease, as the registry advises.
func renewInterval(lease uint32) time.Duration {
	if lease == 0 {
		lease = 30 // the registry's default, should it ever answer 0
	}
	d := time.Duration(lease) * time.Second / 3
	if d < 500*time.Millisecond {
		d = 500 * time.Millisecond
	}
	return d
}

// sleep waits d, or less if ctx ends first; false means ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
