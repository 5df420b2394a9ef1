// Smoke test: runs the built bin/route-tag against a fake Registry served
// here, then calls every SessionSupplement RPC the way sipbus would.
//
//	./build.sh test
//
// (builds first, then `go test -count=1 -v .` in GOPATH mode; ROUTE_TAG_BIN
// names the binary, default bin/route-tag).
package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	edge "sipbus.example/gen/edgev1"
	ext "sipbus.example/gen/extensionv1"
	session "sipbus.example/gen/sessionv1"
)

// ---- fake registry ----

type fakeRegistry struct {
	ext.UnimplementedRegistryServer
	token string // expected bearer token; "" expects no authorization at all

	mu        sync.Mutex
	registers []*ext.RegisterRequest
	renews    []string
	deregs    []string
	badAuth   []string // "<method>: <authorization values>"
	lapseOnce bool     // answer the first Renew with NOT_FOUND
	events    chan string
}

func newFakeRegistry(token string, lapseOnce bool) *fakeRegistry {
	return &fakeRegistry{token: token, lapseOnce: lapseOnce, events: make(chan string, 100)}
}

// checkAuth records every call whose authorization metadata is not exactly
// what the program was told to send.
func (f *fakeRegistry) checkAuth(ctx context.Context, req interface{}, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (interface{}, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	got := md.Get("authorization")
	want := []string{}
	if f.token != "" {
		want = []string{"Bearer " + f.token}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		f.mu.Lock()
		f.badAuth = append(f.badAuth, fmt.Sprintf("%s: %q", info.FullMethod, got))
		f.mu.Unlock()
		return nil, status.Error(codes.Unauthenticated, "bad token")
	}
	return h(ctx, req)
}

func (f *fakeRegistry) Register(_ context.Context, req *ext.RegisterRequest) (*ext.RegisterReply, error) {
	f.mu.Lock()
	f.registers = append(f.registers, req)
	id := fmt.Sprintf("reg-%d", len(f.registers))
	f.mu.Unlock()
	f.events <- "register " + id
	return &ext.RegisterReply{Id: id, LeaseSeconds: 3}, nil // renew every 1 s
}

func (f *fakeRegistry) Renew(_ context.Context, req *ext.RenewRequest) (*ext.RenewReply, error) {
	f.mu.Lock()
	f.renews = append(f.renews, req.GetId())
	lapse := f.lapseOnce
	f.lapseOnce = false
	f.mu.Unlock()
	f.events <- "renew " + req.GetId()
	if lapse {
		return nil, status.Error(codes.NotFound, "lease lapsed")
	}
	return &ext.RenewReply{LeaseSeconds: 3}, nil
}

func (f *fakeRegistry) Deregister(_ context.Context, req *ext.DeregisterRequest) (*ext.DeregisterReply, error) {
	f.mu.Lock()
	f.deregs = append(f.deregs, req.GetId())
	f.mu.Unlock()
	f.events <- "deregister " + req.GetId()
	return &ext.DeregisterReply{}, nil
}

func (f *fakeRegistry) serve(t *testing.T, addr string) *grpc.Server {
	t.Helper()
	var lis net.Listener
	var err error
	for i := 0; i < 20; i++ { // the port was free a moment ago; be patient
		if lis, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("fake registry listen %s: %v", addr, err)
	}
	s := grpc.NewServer(grpc.UnaryInterceptor(f.checkAuth))
	ext.RegisterRegistryServer(s, f)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return s
}

// waitEvent waits for the registry to see `want`, skipping other events.
func (f *fakeRegistry) waitEvent(t *testing.T, want string, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case ev := <-f.events:
			if ev == want {
				return
			}
		case <-deadline:
			t.Fatalf("registry never saw %q within %s", want, within)
		}
	}
}

// ---- the program under test ----

type proc struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr *lockedBuffer
	exited chan error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func start(t *testing.T, env ...string) *proc {
	t.Helper()
	bin := os.Getenv("ROUTE_TAG_BIN")
	if bin == "" {
		bin = "bin/route-tag"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s: %v (run ./build.sh first)", bin, err)
	}
	cmd := exec.Command(bin)
	// The program reads these; keep the caller's own settings out.
	ours := map[string]bool{}
	for _, k := range strings.Fields("SIPBUS_REGISTRY SIPBUS_REGISTRY_TOKEN LISTEN ADVERTISE NAME PRIORITY LEASE_SECONDS ON_FAILURE REJECT_STATUS TIMEOUT_MS ROUTE_TAG") {
		ours[k] = true
	}
	for _, kv := range os.Environ() {
		if !ours[strings.SplitN(kv, "=", 2)[0]] {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	p := &proc{cmd: cmd, lines: make(chan string, 10), stderr: &lockedBuffer{}, exited: make(chan error, 1)}
	cmd.Stderr = p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		p.exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		if t.Failed() {
			t.Logf("program stderr:\n%s", p.stderr.String())
		}
	})
	return p
}

var registeredRe = regexp.MustCompile(`^registered (\S+) (\S+) (http://127\.0\.0\.1:\d+)$`)

// waitRegistered returns the name, id and address of the next stdout line.
func (p *proc) waitRegistered(t *testing.T, within time.Duration) (name, id, address string) {
	t.Helper()
	select {
	case line := <-p.lines:
		m := registeredRe.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("stdout line %q is not `registered <name> <id> <address>`", line)
		}
		return m[1], m[2], m[3]
	case err := <-p.exited:
		t.Fatalf("program exited before registering: %v", err)
	case <-time.After(within):
		t.Fatalf("no `registered` line within %s", within)
	}
	return
}

func (p *proc) terminate(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v (want status 0)", err)
		}
	case <-time.After(6 * time.Second):
		t.Fatal("still running 6 s after SIGTERM")
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// ---- SIP messages as sipbus would pass them ----

func invite() *edge.SipMessage {
	return &edge.SipMessage{
		StartLine: &edge.SipMessage_Request{Request: &edge.RequestLine{Method: "INVITE", Uri: "sip:bob@biloxi.example.com"}},
		Headers: []*edge.Header{
			{Name: "Via", Value: "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds"},
			{Name: "Max-Forwards", Value: "70"},
			{Name: "To", Value: "Bob <sip:bob@biloxi.example.com>"},
			{Name: "From", Value: "Alice <sip:alice@atlanta.example.com>;tag=1928301774"},
			{Name: "Call-ID", Value: "a84b4c76e66710@pc33.atlanta.example.com"},
			{Name: "CSeq", Value: "314159 INVITE"},
			{Name: "Contact", Value: "<sip:alice@192.0.2.10:5060>"},
			{Name: "X-Route-Tag", Value: "stale"},
			{Name: "Content-Type", Value: "application/sdp"},
		},
		Body: []byte("v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"),
	}
}

func request(method string) *edge.SipMessage {
	return &edge.SipMessage{
		StartLine: &edge.SipMessage_Request{Request: &edge.RequestLine{Method: method, Uri: "sip:bob@192.0.2.20:5060"}},
		Headers: []*edge.Header{
			{Name: "Call-ID", Value: "a84b4c76e66710@pc33.atlanta.example.com"},
			{Name: "CSeq", Value: "231 " + method},
		},
	}
}

func ok200() *edge.SipMessage {
	return &edge.SipMessage{
		StartLine: &edge.SipMessage_Status{Status: &edge.StatusLine{Code: 200, Reason: "OK"}},
		Headers:   []*edge.Header{{Name: "CSeq", Value: "314159 INVITE"}},
	}
}

// ---- tests ----

// TestLifecycle: registry down at start (retries), token metadata on every
// call, register / renew / re-register after NOT_FOUND, every RPC, and
// deregister + exit 0 on SIGTERM.
func TestLifecycle(t *testing.T) {
	const token = "s3cret"
	regAddr := freeAddr(t)
	p := start(t,
		"SIPBUS_REGISTRY=http://"+regAddr,
		"SIPBUS_REGISTRY_TOKEN="+token,
		"LEASE_SECONDS=3",
		"PRIORITY=40",
		"ROUTE_TAG=edge-7",
	)

	// Nobody listens yet: the program must keep trying, not exit.
	time.Sleep(2500 * time.Millisecond)
	select {
	case err := <-p.exited:
		t.Fatalf("exited while the registry was down: %v", err)
	case line := <-p.lines:
		t.Fatalf("printed %q with no registry", line)
	default:
	}
	if !strings.Contains(p.stderr.String(), "register with") {
		t.Fatalf("no retry logged on stderr")
	}

	reg := newFakeRegistry(token, true)
	reg.serve(t, regAddr)

	name, id, address := p.waitRegistered(t, 10*time.Second)
	if name != "route-tag" || id != "reg-1" {
		t.Fatalf("registered %s %s, want route-tag reg-1", name, id)
	}
	reg.mu.Lock()
	r := reg.registers[0]
	reg.mu.Unlock()
	if r.GetPoint() != ext.Point_SESSION_SUPPLEMENT || r.GetName() != "route-tag" || r.GetAddress() != address ||
		fmt.Sprint(r.GetFilters()) != "[INVITE]" || r.Priority == nil || r.GetPriority() != 40 ||
		r.GetLeaseSeconds() != 3 || r.GetOnFailure() != ext.FailurePolicy_FAIL_OPEN {
		t.Fatalf("unexpected RegisterRequest: %v", r)
	}
	t.Logf("registered %s %s %s", name, id, address)

	// First Renew (after 1 s) answers NOT_FOUND: the program registers again.
	reg.waitEvent(t, "renew reg-1", 3*time.Second)
	name, id, address2 := p.waitRegistered(t, 5*time.Second)
	if id != "reg-2" || address2 != address {
		t.Fatalf("re-registered as %s %s %s", name, id, address2)
	}
	reg.waitEvent(t, "renew reg-2", 3*time.Second)

	// Call the supplement like sipbus would.
	conn, err := grpc.Dial(strings.TrimPrefix(address, "http://"), grpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := session.NewSessionSupplementClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sess := &session.Session{Id: "s-1", Caller: "sip:alice@atlanta.example.com", Callee: "sip:bob@biloxi.example.com"}

	// Begin keeps other values and adds `started`.
	begin, err := c.Begin(ctx, &session.BeginRequest{Session: sess, Data: &session.Datastore{Values: map[string][]byte{"keep": []byte("me")}}})
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	started, err := strconv.ParseInt(string(begin.GetData().GetValues()["started"]), 10, 64)
	if err != nil || time.Since(time.UnixMilli(started)).Abs() > time.Minute {
		t.Fatalf("Begin data %v: started not a recent unix ms", begin.GetData().GetValues())
	}
	if string(begin.GetData().GetValues()["keep"]) != "me" {
		t.Fatalf("Begin dropped existing values: %v", begin.GetData().GetValues())
	}
	if _, err := c.Begin(ctx, &session.BeginRequest{}); err != nil {
		t.Fatalf("Begin (empty): %v", err)
	}
	data := begin.GetData()

	// The INVITE gets one REPLACE, the same on a retried send.
	for i := 0; i < 2; i++ {
		out, err := c.OutgoingRequest(ctx, &session.OutgoingEvent{Session: sess, Leg: session.Leg_LEG_B, Message: invite(), Data: data})
		if err != nil {
			t.Fatalf("OutgoingRequest INVITE: %v", err)
		}
		e := out.GetEdits()
		if len(e) != 1 || e[0].GetOp() != session.HeaderEdit_OP_REPLACE || e[0].GetName() != "X-Route-Tag" || e[0].GetValue() != "edge-7" {
			t.Fatalf("INVITE edits = %v, want one REPLACE X-Route-Tag: edge-7", e)
		}
		if out.GetData() != nil || len(out.GetActions()) != 0 {
			t.Fatalf("INVITE reply touches data/actions: %v", out)
		}
	}
	// Other methods, and empty events, are left alone.
	for _, ev := range []*session.OutgoingEvent{
		{Session: sess, Leg: session.Leg_LEG_B, Message: request("BYE"), Data: data},
		{Session: sess, Leg: session.Leg_LEG_A, Message: request("invite")}, // methods are case-sensitive
		{},
	} {
		out, err := c.OutgoingRequest(ctx, ev)
		if err != nil || len(out.GetEdits()) != 0 {
			t.Fatalf("OutgoingRequest %v: %v %v, want no edits", ev.GetMessage().GetRequest(), out, err)
		}
	}
	if out, err := c.OutgoingResponse(ctx, &session.OutgoingEvent{Session: sess, Leg: session.Leg_LEG_A, Message: ok200(), Data: data}); err != nil || len(out.GetEdits()) != 0 {
		t.Fatalf("OutgoingResponse: %v %v", out, err)
	}
	if v, err := c.IncomingRequest(ctx, &session.RequestEvent{Session: sess, Leg: session.Leg_LEG_A, Request: invite(), Data: data}); err != nil || v.GetStop() != nil || v.GetData() != nil {
		t.Fatalf("IncomingRequest: %v %v, want continue", v, err)
	}
	if _, err := c.IncomingRequest(ctx, &session.RequestEvent{}); err != nil {
		t.Fatalf("IncomingRequest (empty): %v", err)
	}
	if _, err := c.IncomingResponse(ctx, &session.ResponseEvent{Session: sess, Leg: session.Leg_LEG_B, Response: ok200(), Data: data}); err != nil {
		t.Fatalf("IncomingResponse: %v", err)
	}
	if tr, err := c.Timer(ctx, &session.TimerEvent{Session: sess, Data: data}); err != nil || len(tr.GetActions()) != 0 {
		t.Fatalf("Timer: %v %v", tr, err)
	}
	if _, err := c.End(ctx, &session.EndRequest{Session: sess, Data: data}); err != nil {
		t.Fatalf("End: %v", err)
	}
	if _, err := c.End(ctx, &session.EndRequest{}); err != nil {
		t.Fatalf("End (empty): %v", err)
	}
	if _, err := c.End(ctx, &session.EndRequest{Session: sess, Data: &session.Datastore{Values: map[string][]byte{"started": []byte("junk")}}}); err != nil {
		t.Fatalf("End (junk started): %v", err)
	}
	if !regexp.MustCompile(`session "s-1" ended after \d`).MatchString(p.stderr.String()) {
		t.Fatalf("End logged no duration on stderr")
	}

	p.terminate(t)
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if fmt.Sprint(reg.deregs) != "[reg-2]" {
		t.Fatalf("deregistered %v, want [reg-2]", reg.deregs)
	}
	if len(reg.badAuth) != 0 {
		t.Fatalf("calls without the bearer token: %v", reg.badAuth)
	}
	t.Logf("registers %d, renews %v, deregisters %v, all with `authorization: Bearer %s`",
		len(reg.registers), reg.renews, reg.deregs, token)
}

// TestNoToken: without SIPBUS_REGISTRY_TOKEN no authorization metadata is
// sent; optional settings reach the RegisterRequest; SIGINT works too.
func TestNoToken(t *testing.T) {
	regAddr := freeAddr(t)
	reg := newFakeRegistry("", false)
	reg.serve(t, regAddr)
	p := start(t,
		"SIPBUS_REGISTRY=http://"+regAddr,
		"NAME=tagger",
		"ON_FAILURE=closed",
		"REJECT_STATUS=480",
		"TIMEOUT_MS=200",
		"ADVERTISE=http://127.0.0.1:1",
	)
	name, id, address := p.waitRegistered(t, 10*time.Second)
	if name != "tagger" || id != "reg-1" || address != "http://127.0.0.1:1" {
		t.Fatalf("registered %s %s %s", name, id, address)
	}
	reg.mu.Lock()
	r := reg.registers[0]
	reg.mu.Unlock()
	if r.Priority != nil || r.GetOnFailure() != ext.FailurePolicy_FAIL_CLOSED || r.GetRejectStatus() != 480 ||
		r.GetTimeoutMs() != 200 || r.GetLeaseSeconds() != 30 {
		t.Fatalf("unexpected RegisterRequest: %v", r)
	}
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("exit after SIGINT: %v", err)
		}
	case <-time.After(6 * time.Second):
		t.Fatal("still running after SIGINT")
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if fmt.Sprint(reg.deregs) != "[reg-1]" || len(reg.badAuth) != 0 {
		t.Fatalf("deregs %v, bad auth %v", reg.deregs, reg.badAuth)
	}
}
