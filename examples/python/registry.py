"""Joins an example extension to sipbus through the extension registry.

Every example program ends with `registry.serve(...)`, which:

- starts the program's gRPC server on LISTEN (default 127.0.0.1:0, any free
  port) and works out the address sipbus should call (ADVERTISE, default
  http://<listen host>:<bound port>);
- registers it with the registry at SIPBUS_REGISTRY (default
  http://127.0.0.1:50051), retrying every 2 s while the registry is
  unreachable or refuses, and prints `registered <name> <id> <address>` on
  stdout once it is in (the only line a program writes to stdout);
- renews the lease every third of the granted lease in a background thread,
  and registers again when a renewal says NOT_FOUND (the lease lapsed, for
  instance after the registry's store was wiped);
- on SIGTERM or SIGINT deregisters (best effort), stops the server and exits 0.

Importing this module also puts gen/ (made by setup.sh) on sys.path, so the
programs can `from sipbus.session.v1 import supplement_pb2`.

Environment: SIPBUS_REGISTRY, SIPBUS_REGISTRY_TOKEN, LISTEN, ADVERTISE, NAME,
PRIORITY, LEASE_SECONDS, ON_FAILURE, REJECT_STATUS, TIMEOUT_MS (README.md).
"""

import logging
import os
import signal
import sys
import threading
from concurrent import futures
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

_HERE = os.path.dirname(os.path.abspath(__file__))
_GEN = os.path.join(_HERE, "gen")
if not os.path.isdir(os.path.join(_GEN, "sipbus")):
    sys.exit(f"{_GEN} is missing: run {_HERE}/setup.sh first (run.sh does it for you)")
sys.path.insert(0, _GEN)

import grpc  # noqa: E402  (needs the venv, and gen/ on sys.path for the next line)
from sipbus.extension.v1 import registry_pb2, registry_pb2_grpc  # noqa: E402

log = logging.getLogger("registry")

# How often a failed Register (or Renew) is tried again.
RETRY_SECONDS = 2.0
# Deadlines of the registry calls: short, so a dead registry never holds up
# the renewals or the shutdown for long.
CALL_TIMEOUT = 5.0
DEREGISTER_TIMEOUT = 2.0


class ConfigError(Exception):
    pass


def _env_int(name: str, default: Optional[int], minimum: int = 0) -> Optional[int]:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} is below {minimum}")
    return value


@dataclass
class Settings:
    registry: str
    token: Optional[str]
    listen: str
    advertise: Optional[str]
    name: str
    priority: Optional[int]
    lease_seconds: int
    on_failure: int
    reject_status: int
    timeout_ms: int

    @classmethod
    def from_env(cls, default_name: str) -> "Settings":
        on_failure = os.environ.get("ON_FAILURE", "open").strip().lower() or "open"
        policies = {"open": registry_pb2.FAIL_OPEN, "closed": registry_pb2.FAIL_CLOSED}
        if on_failure not in policies:
            raise ConfigError(f"ON_FAILURE={on_failure!r}: use open or closed")
        return cls(
            registry=os.environ.get("SIPBUS_REGISTRY", "").strip() or "http://127.0.0.1:50051",
            token=os.environ.get("SIPBUS_REGISTRY_TOKEN") or None,
            listen=os.environ.get("LISTEN", "").strip() or "127.0.0.1:0",
            advertise=os.environ.get("ADVERTISE", "").strip() or None,
            name=os.environ.get("NAME", "").strip() or default_name,
            priority=_env_int("PRIORITY", None, minimum=-(2**31)),
            lease_seconds=_env_int("LEASE_SECONDS", 30),
            on_failure=policies[on_failure],
            reject_status=_env_int("REJECT_STATUS", 0),
            timeout_ms=_env_int("TIMEOUT_MS", 0),
        )


def _registry_channel(url: str) -> grpc.Channel:
    # Reconnect attempts are normally backed off up to 2 minutes; keep them
    # close to our retry interval so a registry that comes back is noticed
    # within a few seconds.
    options = [
        ("grpc.initial_reconnect_backoff_ms", 1000),
        ("grpc.min_reconnect_backoff_ms", 1000),
        ("grpc.max_reconnect_backoff_ms", 2000),
    ]
    if url.startswith("https://"):
        return grpc.secure_channel(url[len("https://"):].rstrip("/"), grpc.ssl_channel_credentials(), options)
    if url.startswith("http://"):
        url = url[len("http://"):]
    return grpc.insecure_channel(url.rstrip("/"), options)


def _describe(err: grpc.RpcError) -> str:
    code = err.code() if hasattr(err, "code") else None
    details = err.details() if hasattr(err, "details") else str(err)
    return f"{code.name if code else 'error'}: {details}"


class Registration:
    """One registered instance: Register, the renewals, Deregister."""

    def __init__(self, settings: Settings, point: int, address: str,
                 filters: Sequence[str], types: Sequence[str]):
        self.settings = settings
        self.point = point
        self.address = address
        self.filters = list(filters)
        self.types = list(types)
        self.id: Optional[str] = None
        self._channel = _registry_channel(settings.registry)
        self._stub = registry_pb2_grpc.RegistryStub(self._channel)
        self._metadata = (("authorization", f"Bearer {settings.token}"),) if settings.token else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="registry", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stops the renewals, then deregisters (best effort)."""
        self._stop.set()
        # Let a Register already under way finish, so its id is deregistered
        # too rather than left to lapse.
        self._thread.join(CALL_TIMEOUT + 1)
        if self.id is not None:
            try:
                self._stub.Deregister(registry_pb2.DeregisterRequest(id=self.id),
                                      timeout=DEREGISTER_TIMEOUT, metadata=self._metadata)
                log.info("deregistered %s", self.id)
            except grpc.RpcError as err:
                log.warning("deregister %s failed (the lease will lapse): %s", self.id, _describe(err))
            self.id = None
        self._channel.close()

    def _run(self) -> None:
        delay = 0.0
        while not self._stop.wait(delay):
            try:
                delay = self._renew() if self.id is not None else self._register()
            except Exception:  # a bug must not end the renewals for good
                log.exception("registry call failed unexpectedly, retrying in %.0f s", RETRY_SECONDS)
                delay = RETRY_SECONDS

    def _register(self) -> float:
        """Returns the wait before the next call: a renewal, or a retry."""
        s = self.settings
        request = registry_pb2.RegisterRequest(
            point=self.point, name=s.name, address=self.address,
            filters=self.filters, types=self.types,
            timeout_ms=s.timeout_ms, on_failure=s.on_failure,
            reject_status=s.reject_status, lease_seconds=s.lease_seconds)
        if s.priority is not None:
            # proto3 `optional`: only a set field overrides sipbus's default (100).
            request.priority = s.priority
        try:
            reply = self._stub.Register(request, timeout=CALL_TIMEOUT, metadata=self._metadata)
        except grpc.RpcError as err:
            log.warning("register with %s failed, retrying in %.0f s: %s",
                        s.registry, RETRY_SECONDS, _describe(err))
            return RETRY_SECONDS
        self.id = reply.id
        lease = reply.lease_seconds or s.lease_seconds or 30
        log.info("registered %s as %s at %s, lease %d s", s.name, reply.id, self.address, lease)
        # The line tests and scripts wait for; the only thing on stdout.
        try:
            print(f"registered {s.name} {reply.id} {self.address}", flush=True)
        except OSError as err:  # nobody reads stdout any more: carry on regardless
            log.warning("cannot write the registered line to stdout: %s", err)
        return self._interval(lease)

    def _renew(self) -> float:
        try:
            reply = self._stub.Renew(registry_pb2.RenewRequest(id=self.id),
                                     timeout=CALL_TIMEOUT, metadata=self._metadata)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                log.warning("lease of %s lapsed, registering again", self.id)
                self.id = None
                return 0.0
            # Still within the lease, perhaps: keep trying the same id.
            log.warning("renew %s failed, retrying in %.0f s: %s", self.id, RETRY_SECONDS, _describe(err))
            return RETRY_SECONDS
        log.debug("renewed %s, lease %d s", self.id, reply.lease_seconds)
        return self._interval(reply.lease_seconds or self.settings.lease_seconds or 30)

    @staticmethod
    def _interval(lease: int) -> float:
        return max(lease / 3.0, 0.5)


class _Shutdown(BaseException):
    """Raised by the signal handler to leave the main thread's wait."""


def _on_signal(signum, _frame):
    # A second signal while shutting down kills the process outright.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    raise _Shutdown(signal.Signals(signum).name)


def serve(point: int, default_name: str, add_servicer: Callable[[grpc.Server], None],
          filters: Sequence[str] = (), types: Sequence[str] = ()) -> None:
    """Runs an extension until SIGTERM / SIGINT; never returns."""
    try:
        settings = Settings.from_env(default_name)
    except ConfigError as err:
        log.error("%s", err)
        sys.exit(2)

    # Handlers first: a signal during start-up still ends in a clean exit.
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    server: Optional[grpc.Server] = None
    registration: Optional[Registration] = None
    try:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        add_servicer(server)
        try:
            port = server.add_insecure_port(settings.listen)
        except RuntimeError:
            port = 0
        if port == 0:
            log.error("cannot listen on %s", settings.listen)
            sys.exit(1)
        server.start()
        host = settings.listen.rpartition(":")[0] or "127.0.0.1"
        address = settings.advertise or f"http://{host}:{port}"
        log.info("%s serving on %s:%d, advertised as %s", settings.name, host, port, address)

        registration = Registration(settings, point, address, filters, types)
        registration.start()
        while True:
            signal.pause()
    except _Shutdown as why:
        log.info("%s: shutting down", why)
    if registration is not None:
        registration.close()
    if server is not None:
        server.stop(grace=1).wait()
    sys.exit(0)


def setup_logging(name: str) -> logging.Logger:
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, level, logging.INFO),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return logging.getLogger(name)
