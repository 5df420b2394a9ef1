#!/usr/bin/env python3
"""Smoke test of the examples, without sipbus: ./run.sh smoke_test.py [-v]

Each program is started through run.sh as a subprocess, against a fake
Registry served here; the test waits for its `registered` line, calls its
service as sipbus would, with realistic SIP, and checks the renewals, the
re-registration after NOT_FOUND, the bearer token, the retries while the
registry is away, and the Deregister on SIGTERM / SIGINT.
SMOKE_VERBOSE=1 shows the programs' logs.
"""

import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from concurrent import futures

import registry  # noqa: F401  (puts gen/ on sys.path)
import grpc
from sipbus.edge.v1 import edge_pb2
from sipbus.extension.v1 import registry_pb2, registry_pb2_grpc
from sipbus.pubsub.v1 import subscription_pb2 as sub_pb
from sipbus.pubsub.v1 import subscription_pb2_grpc as sub_grpc
from sipbus.session.v1 import supplement_pb2 as sup_pb
from sipbus.session.v1 import supplement_pb2_grpc as sup_grpc

HERE = os.path.dirname(os.path.abspath(__file__))
VERBOSE = bool(os.environ.get("SMOKE_VERBOSE"))


# --- A fake registry -----------------------------------------------------------

class FakeRegistry(registry_pb2_grpc.RegistryServicer):
    """Records every call with its `authorization` metadata; refuses a wrong
    token when one is required; can forget a lease to make Renew say NOT_FOUND."""

    def __init__(self, token=None, lease=3, port=0):
        self.token = token
        self.lease = lease
        self.calls = []  # (method, request, authorization or None)
        self.live = set()
        self.forget_leases = False
        self._cond = threading.Condition()
        self._ids = 0
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        registry_pb2_grpc.add_RegistryServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
        self.url = f"http://127.0.0.1:{self.port}"
        self.server.start()

    def stop(self):
        self.server.stop(None).wait()

    def _record(self, method, request, context):
        auth = dict(context.invocation_metadata()).get("authorization")
        with self._cond:
            self.calls.append((method, request, auth))
            self._cond.notify_all()
        if self.token is not None and auth != f"Bearer {self.token}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong registry token")

    def Register(self, request, context):
        self._record("Register", request, context)
        with self._cond:
            self._ids += 1
            rid = f"reg-{self._ids}"
            self.live.add(rid)
        return registry_pb2.RegisterReply(id=rid, lease_seconds=self.lease)

    def Renew(self, request, context):
        self._record("Renew", request, context)
        with self._cond:
            if self.forget_leases:
                self.live.clear()
                self.forget_leases = False
            known = request.id in self.live
        if not known:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no registration {request.id}")
        return registry_pb2.RenewReply(lease_seconds=self.lease)

    def Deregister(self, request, context):
        self._record("Deregister", request, context)
        with self._cond:
            self.live.discard(request.id)
        return registry_pb2.DeregisterReply()

    def List(self, request, context):
        self._record("List", request, context)
        return registry_pb2.ListReply(target="fake")

    def wait_call(self, method, timeout, pred=lambda request: True, count=1):
        """Waits for `count` calls of `method` matching pred; returns them."""
        def found():
            hits = [c for c in self.calls if c[0] == method and pred(c[1])]
            return hits if len(hits) >= count else None
        with self._cond:
            hits = self._cond.wait_for(found, timeout)
        if not hits:
            raise AssertionError(f"no {count} {method} call(s) within {timeout} s; calls: "
                                 f"{[(m, str(r).strip(), a) for m, r, a in self.calls]}")
        return hits


# --- An example program as a subprocess ----------------------------------------

class Program:
    def __init__(self, script, args, env):
        full_env = {k: v for k, v in os.environ.items()
                    if k not in ("SIPBUS_REGISTRY", "SIPBUS_REGISTRY_TOKEN", "LISTEN", "ADVERTISE",
                                 "NAME", "PRIORITY", "LEASE_SECONDS", "ON_FAILURE",
                                 "REJECT_STATUS", "TIMEOUT_MS", "BLOCK_LIST", "STATUS_FILE")}
        full_env.update(env)
        # Through run.sh, as a user would: this also checks that its exec
        # hands the signals to python.
        self.proc = subprocess.Popen([os.path.join(HERE, "run.sh"), script, *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=full_env)
        self.lines = queue.Queue()
        self.stderr = []
        self._readers = [threading.Thread(target=self._read_stdout, daemon=True),
                         threading.Thread(target=self._read_stderr, args=(script,), daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self):
        with self.proc.stdout:
            for line in self.proc.stdout:
                self.lines.put(line.rstrip("\n"))

    def _read_stderr(self, script):
        with self.proc.stderr:
            for line in self.proc.stderr:
                self.stderr.append(line)
                if VERBOSE:
                    sys.stderr.write(f"  [{script}] {line}")

    def registered(self, timeout=20):
        """The next stdout line, which must be `registered <name> <id> <address>`."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no `registered` line within {timeout} s; stderr:\n{''.join(self.stderr)}")
        words = line.split()
        if len(words) != 4 or words[0] != "registered":
            raise AssertionError(f"unexpected stdout line {line!r}")
        return words[1], words[2], words[3]

    def signal(self, signum, timeout=15):
        self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"no exit within {timeout} s of {signal.Signals(signum).name}")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for reader in self._readers:
            reader.join(5)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write(path, text):
    """Writes a watched file and moves its mtime on: two writes within one
    mtime tick would look unchanged otherwise."""
    with open(path, "w") as f:
        f.write(text)
    later = time.time() + 2 + write.bump
    write.bump += 2
    os.utime(path, (later, later))


write.bump = 0


# --- Realistic SIP -------------------------------------------------------------

def invite(caller_from, to="<sip:bob@example.com>", method="INVITE"):
    return edge_pb2.SipMessage(
        request=edge_pb2.RequestLine(method=method, uri="sip:bob@example.com"),
        headers=[
            edge_pb2.Header(name="Via", value="SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport"),
            edge_pb2.Header(name="Max-Forwards", value="70"),
            edge_pb2.Header(name="To", value=to),
            edge_pb2.Header(name="From", value=caller_from),
            edge_pb2.Header(name="Call-ID", value="a84b4c76e66710@pc33.example.com"),
            edge_pb2.Header(name="CSeq", value=f"314159 {method}"),
            edge_pb2.Header(name="Contact", value="<sip:caller@192.0.2.10:5060>"),
            edge_pb2.Header(name="Content-Type", value="application/sdp"),
        ],
        body=b"v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
             b"m=audio 49170 RTP/AVP 0\r\n")


def subscribe(resource, watcher):
    return edge_pb2.SipMessage(
        request=edge_pb2.RequestLine(method="SUBSCRIBE", uri=resource),
        headers=[
            edge_pb2.Header(name="Via", value="SIP/2.0/TCP 192.0.2.20:5060;branch=z9hG4bKnashds7"),
            edge_pb2.Header(name="To", value=f"<{resource}>"),
            edge_pb2.Header(name="From", value=f"<{watcher}>;tag=12341234"),
            edge_pb2.Header(name="Call-ID", value="12345678@192.0.2.20"),
            edge_pb2.Header(name="CSeq", value="1 SUBSCRIBE"),
            edge_pb2.Header(name="Event", value="x-status"),
            edge_pb2.Header(name="Accept", value="text/plain"),
            edge_pb2.Header(name="Expires", value="600"),
        ])


def session(caller="sip:mallory@example.com", sid="s-1"):
    return sup_pb.Session(id=sid, caller=caller, callee="sip:bob@example.com")


# --- The tests -----------------------------------------------------------------

class Base(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def start(self, script, args, env):
        program = Program(script, args, env)
        self.addCleanup(program.kill)
        return program

    def channel(self, address):
        channel = grpc.insecure_channel(address.removeprefix("http://"))
        self.addCleanup(channel.close)
        return channel


class ScreeningTest(Base):
    def test_screening(self):
        fake = FakeRegistry(token="s3cret", lease=3)
        self.addCleanup(fake.stop)
        blocked = os.path.join(self.tmp.name, "blocked.txt")
        write(blocked, "# blocked callers\n\nmallory\n  sip:eve@evil.example.com   # by URI\ntrudy@example.org\n")
        program = self.start("screening.py", ["--block-list", blocked], {
            "SIPBUS_REGISTRY": fake.url, "SIPBUS_REGISTRY_TOKEN": "s3cret",
            "LEASE_SECONDS": "3", "PRIORITY": "10", "ON_FAILURE": "closed", "REJECT_STATUS": "480"})

        name, rid, address = program.registered()
        self.assertEqual((name, rid), ("screening", "reg-1"))
        self.assertRegex(address, r"^http://127\.0\.0\.1:\d+$")
        (_, req, auth), = fake.wait_call("Register", 1)
        self.assertEqual(auth, "Bearer s3cret")
        self.assertEqual(req.point, registry_pb2.SESSION_SUPPLEMENT)
        self.assertEqual((req.name, req.address, list(req.filters)), ("screening", address, ["INVITE"]))
        self.assertTrue(req.HasField("priority"))
        self.assertEqual(req.priority, 10)
        self.assertEqual((req.lease_seconds, req.on_failure, req.reject_status),
                         (3, registry_pb2.FAIL_CLOSED, 480))

        stub = sup_grpc.SessionSupplementStub(self.channel(address))

        def incoming(caller, from_, leg=sup_pb.LEG_A, **kw):
            return stub.IncomingRequest(sup_pb.RequestEvent(
                session=session(caller), leg=leg, request=invite(from_, **kw)), timeout=5)

        def is_603(verdict):
            return (verdict.HasField("stop") and verdict.stop.status.code == 603
                    and verdict.stop.status.reason == "Decline")

        mallory = '"Mallory" <sip:mallory@example.com>;tag=1'
        self.assertTrue(is_603(incoming("sip:mallory@example.com", mallory)))
        # From alone (no caller in the session), other case, other host, URI parameters.
        self.assertTrue(is_603(incoming("", '<sip:MALLORY@Other.Example.NET;transport=tcp>;tag=9')))
        self.assertTrue(is_603(incoming("", "sip:mallory@example.com;tag=1")))
        # Whole-URI entries: this address only.
        self.assertTrue(is_603(incoming("sip:eve@evil.example.com", "<sip:eve@evil.example.com>;tag=2")))
        self.assertFalse(incoming("sip:eve@example.com", "<sip:eve@example.com>;tag=2").HasField("stop"))
        self.assertTrue(is_603(incoming("sip:trudy@example.org", "<sip:trudy@example.org>;tag=3")))
        # Everyone else goes on: an empty verdict.
        self.assertEqual(incoming("sip:alice@example.com", "Alice <sip:alice@example.com>;tag=4"),
                         sup_pb.RequestVerdict())
        # Only new calls from the caller's side are screened.
        self.assertFalse(incoming("sip:mallory@example.com", mallory, leg=sup_pb.LEG_B).HasField("stop"))
        self.assertFalse(incoming("sip:mallory@example.com", mallory,
                                  to="<sip:bob@example.com>;tag=b0b").HasField("stop"))
        self.assertFalse(incoming("sip:mallory@example.com", mallory, method="OPTIONS").HasField("stop"))

        # The file is read again when it changes: no restart.
        write(blocked, "mallory\nalice\n")
        self.assertTrue(is_603(incoming("sip:alice@example.com", "<sip:alice@example.com>;tag=5")))
        self.assertTrue(is_603(incoming("sip:mallory@example.com", mallory)))
        self.assertFalse(incoming("sip:eve@evil.example.com", "<sip:eve@evil.example.com>;tag=6").HasField("stop"))

        # Outgoing INVITEs get one REPLACE edit, the same on a retried send.
        out = sup_pb.OutgoingEvent(session=session("sip:alice@example.com"), leg=sup_pb.LEG_B,
                                   message=invite("<sip:alice@example.com>;tag=4"))
        want = [sup_pb.HeaderEdit(op=sup_pb.HeaderEdit.OP_REPLACE, name="X-Screened", value="passed")]
        self.assertEqual(list(stub.OutgoingRequest(out, timeout=5).edits), want)
        self.assertEqual(list(stub.OutgoingRequest(out, timeout=5).edits), want)
        bye = sup_pb.OutgoingEvent(session=session(), leg=sup_pb.LEG_B,
                                   message=invite("<sip:alice@example.com>;tag=4", method="BYE"))
        self.assertEqual(list(stub.OutgoingRequest(bye, timeout=5).edits), [])

        # Every RPC answers odd, empty input with a neutral reply.
        self.assertEqual(stub.Begin(sup_pb.BeginRequest(session=session()), timeout=5), sup_pb.BeginReply())
        self.assertEqual(stub.End(sup_pb.EndRequest(), timeout=5), sup_pb.EndReply())
        self.assertEqual(stub.IncomingRequest(sup_pb.RequestEvent(), timeout=5), sup_pb.RequestVerdict())
        self.assertEqual(stub.IncomingRequest(sup_pb.RequestEvent(leg=sup_pb.LEG_A, request=edge_pb2.SipMessage(
            request=edge_pb2.RequestLine(method="INVITE"))), timeout=5), sup_pb.RequestVerdict())
        self.assertEqual(stub.IncomingResponse(sup_pb.ResponseEvent(), timeout=5), sup_pb.ResponseReply())
        self.assertEqual(stub.OutgoingRequest(sup_pb.OutgoingEvent(), timeout=5), sup_pb.OutgoingReply())
        self.assertEqual(stub.OutgoingResponse(sup_pb.OutgoingEvent(leg=7), timeout=5), sup_pb.OutgoingReply())
        self.assertEqual(stub.Timer(sup_pb.TimerEvent(), timeout=5), sup_pb.TimerReply())

        # Renewals every lease/3 = 1 s, with the token.
        renewals = fake.wait_call("Renew", 6, lambda r: r.id == "reg-1", count=2)
        self.assertTrue(all(auth == "Bearer s3cret" for _, _, auth in renewals))

        # A lapsed lease (NOT_FOUND): registered again, and the line printed again.
        fake.forget_leases = True
        name, rid, address2 = program.registered(timeout=10)
        self.assertEqual((name, rid, address2), ("screening", "reg-2", address))
        fake.wait_call("Renew", 6, lambda r: r.id == "reg-2")

        # SIGTERM: Deregister with the token, exit 0.
        self.assertEqual(program.signal(signal.SIGTERM), 0)
        (_, req, auth), = fake.wait_call("Deregister", 1)
        self.assertEqual((req.id, auth), ("reg-2", "Bearer s3cret"))


class StatusPackageTest(Base):
    def test_status_package(self):
        fake = FakeRegistry(lease=30)
        self.addCleanup(fake.stop)
        status = os.path.join(self.tmp.name, "status.txt")
        write(status, "# user status\nalice in a meeting\nBob   away \n\ncarol\n")
        port = free_port()
        program = self.start("status_package.py", ["--status-file", status],
                             {"SIPBUS_REGISTRY": fake.url, "LISTEN": f"127.0.0.1:{port}"})

        name, rid, address = program.registered()
        self.assertEqual((name, rid, address), ("x-status", "reg-1", f"http://127.0.0.1:{port}"))
        (_, req, auth), = fake.wait_call("Register", 1)
        self.assertIsNone(auth)  # no SIPBUS_REGISTRY_TOKEN: no authorization metadata
        self.assertEqual(req.point, registry_pb2.SUBSCRIPTION_HANDLER)
        self.assertEqual((list(req.filters), list(req.types)), (["x-status"], ["text/plain"]))
        self.assertFalse(req.HasField("priority"))
        self.assertEqual((req.lease_seconds, req.on_failure, req.timeout_ms), (30, registry_pb2.FAIL_OPEN, 0))

        stub = sub_grpc.SubscriptionHandlerStub(self.channel(address))
        sub = sub_pb.Subscription(id="sub-1", package="x-status", resource="sip:alice@example.com",
                                  watcher="sip:bob@example.com", content_type="text/plain")
        new = sub_pb.NewSubscriptionRequest(subscription=sub, allowed=True,
                                            request=subscribe(sub.resource, sub.watcher))
        self.assertEqual(stub.NewSubscription(new, timeout=5).WhichOneof("decision"), "active")
        new.allowed = False
        self.assertEqual(stub.NewSubscription(new, timeout=5).WhichOneof("decision"), "pending")
        self.assertEqual(stub.NewSubscription(sub_pb.NewSubscriptionRequest(), timeout=5).WhichOneof("decision"),
                         "pending")

        def state(resource):
            return stub.State(sub_pb.StateRequest(package="x-status", resource=resource, content_type="text/plain",
                                                  subscription="sub-1", version=0), timeout=5).body

        self.assertEqual(state("sip:alice@example.com"), b"sip:alice@example.com in a meeting\n")
        self.assertEqual(state("sip:bob@example.com"), b"sip:bob@example.com away\n")
        self.assertEqual(state("sip:carol@example.com"), b"sip:carol@example.com unknown\n")
        self.assertEqual(state("sip:dave@example.com"), b"sip:dave@example.com unknown\n")
        self.assertEqual(stub.State(sub_pb.StateRequest(), timeout=5), sub_pb.StateReply())

        write(status, "alice on the phone\n")
        self.assertEqual(state("sip:alice@example.com"), b"sip:alice@example.com on the phone\n")
        self.assertEqual(state("sip:bob@example.com"), b"sip:bob@example.com unknown\n")

        event = sub_pb.SubscriptionEvent(subscription=sub)
        self.assertEqual(stub.Established(event, timeout=5), sub_pb.Empty())
        self.assertEqual(stub.Refreshed(event, timeout=5), sub_pb.Empty())
        self.assertEqual(stub.Terminated(sub_pb.TerminatedRequest(
            subscription=sub, reason=sub_pb.TERMINATION_REASON_TIMEOUT), timeout=5), sub_pb.Empty())
        self.assertEqual(stub.Terminated(sub_pb.TerminatedRequest(reason=42), timeout=5), sub_pb.Empty())
        self.assertEqual(stub.Notified(sub_pb.NotifiedRequest(
            package="x-status", resource="sip:alice@example.com",
            notify=edge_pb2.SipMessage(request=edge_pb2.RequestLine(method="NOTIFY", uri="sip:alice@example.com"),
                                       body=b"sip:x@example.com away\n")), timeout=5), sub_pb.Empty())
        self.assertEqual(stub.Established(sub_pb.SubscriptionEvent(), timeout=5), sub_pb.Empty())

        # SIGINT does what SIGTERM does.
        self.assertEqual(program.signal(signal.SIGINT), 0)
        (_, req, _), = fake.wait_call("Deregister", 1)
        self.assertEqual(req.id, "reg-1")


class RegistryTroubleTest(Base):
    def test_retries_until_the_registry_comes(self):
        port = free_port()  # nothing listens there yet
        blocked = os.path.join(self.tmp.name, "blocked.txt")
        write(blocked, "mallory\n")
        program = self.start("screening.py", ["--block-list", blocked],
                             {"SIPBUS_REGISTRY": f"http://127.0.0.1:{port}"})
        time.sleep(5)
        self.assertIsNone(program.proc.poll(), "the program exited without a registry")
        self.assertTrue(program.lines.empty())
        failures = [line for line in program.stderr if "register with" in line]
        self.assertGreaterEqual(len(failures), 2, "".join(program.stderr))

        fake = FakeRegistry(port=port)
        self.addCleanup(fake.stop)
        self.assertEqual(program.registered(timeout=10)[:2], ("screening", "reg-1"))
        self.assertEqual(program.signal(signal.SIGTERM), 0)
        fake.wait_call("Deregister", 1)

    def test_wrong_token_is_refused_and_retried(self):
        fake = FakeRegistry(token="right")
        self.addCleanup(fake.stop)
        program = self.start("status_package.py", [], {"SIPBUS_REGISTRY": fake.url, "SIPBUS_REGISTRY_TOKEN": "wrong"})
        calls = fake.wait_call("Register", 10, count=2)
        self.assertTrue(all(auth == "Bearer wrong" for _, _, auth in calls))
        self.assertTrue(program.lines.empty())
        self.assertTrue(any("UNAUTHENTICATED" in line for line in program.stderr), "".join(program.stderr))
        # Never registered, so nothing to deregister; still a clean exit.
        self.assertEqual(program.signal(signal.SIGTERM), 0)
        self.assertEqual([c for c in fake.calls if c[0] == "Deregister"], [])

    def test_stops_cleanly_while_unregistered(self):
        program = self.start("screening.py", ["--block-list", os.path.join(self.tmp.name, "missing.txt")],
                             {"SIPBUS_REGISTRY": f"http://127.0.0.1:{free_port()}"})
        deadline = time.time() + 10
        while not any("register with" in line for line in program.stderr):
            self.assertLess(time.time(), deadline, "".join(program.stderr))
            time.sleep(0.1)
        self.assertEqual(program.signal(signal.SIGTERM), 0)


if __name__ == "__main__":
    unittest.main()
