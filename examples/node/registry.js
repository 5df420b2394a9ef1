'use strict';
// What every example shares: loading the contracts, serving one extension
// service, and keeping a registration with sipbus's extension registry
// (proto/sipbus/extension/v1/registry.proto) for as long as the process
// lives. The programs only say which point they serve and how.

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

// The contracts are read at start from the repository's proto/ folder, so
// the examples always speak the .proto files they sit next to.
const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'proto');

// keepCase: field names as written in the .proto files (session_lines,
// content_type, lease_seconds), the same in every example and test.
const LOADER_OPTIONS = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_ROOT],
};

const RETRY_MS = 2000;
// A Register or Renew that hangs must not stall the lease loop.
const CALL_DEADLINE_MS = 3000;
const DEREGISTER_DEADLINE_MS = 2000;

/** Loads a .proto by its path under proto/, e.g. `sipbus/sdp/v1/sdp.proto`. */
function loadProto(file) {
  return grpc.loadPackageDefinition(protoLoader.loadSync(file, LOADER_OPTIONS));
}

function log(name, ...args) {
  console.error(`[${name}]`, ...args);
}

/**
 * A unary handler from a function of the request (sync or async). A thrown
 * error becomes INTERNAL instead of taking the process down; an error with
 * a gRPC `code` is passed on as it is.
 */
function unary(name, method, fn) {
  return (call, callback) => {
    Promise.resolve()
      .then(() => fn(call.request || {}))
      .then(
        (reply) => callback(null, reply),
        (err) => {
          log(name, `${method} failed:`, err && err.stack ? err.stack : err);
          const code = err && Number.isInteger(err.code) ? err.code : grpc.status.INTERNAL;
          callback({ code, details: String((err && err.message) || err) });
        },
      );
  };
}

function envInt(env, key, fallback) {
  const raw = env[key];
  if (raw === undefined || raw.trim() === '') return fallback;
  const n = Number(raw.trim());
  if (!Number.isInteger(n)) throw new Error(`${key}=${raw} is not an integer`);
  return n;
}

/** `host:port`, `[v6]:port`: split at the last colon. */
function splitHostPort(value) {
  const i = value.lastIndexOf(':');
  if (i <= 0) throw new Error(`LISTEN=${value} is not host:port`);
  const port = Number(value.slice(i + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`LISTEN=${value}: bad port`);
  return { host: value.slice(0, i), port };
}

/** The registry's URL as grpc-js wants it: host:port and credentials. */
function registryTarget(url) {
  const m = /^(https?):\/\/(.+?)\/*$/.exec(url);
  if (!m) return { target: url, credentials: grpc.credentials.createInsecure() };
  const credentials = m[1] === 'https' ? grpc.credentials.createSsl() : grpc.credentials.createInsecure();
  return { target: m[2], credentials };
}

/** Settings from the environment (see README.md); throws on a bad value. */
function settings(env, defaultName) {
  const onFailure = (env.ON_FAILURE || 'open').trim().toLowerCase();
  if (onFailure !== 'open' && onFailure !== 'closed') {
    throw new Error(`ON_FAILURE=${env.ON_FAILURE}: expected open or closed`);
  }
  const priority = envInt(env, 'PRIORITY', undefined);
  return {
    registry: env.SIPBUS_REGISTRY || 'http://127.0.0.1:50051',
    token: env.SIPBUS_REGISTRY_TOKEN || '',
    listen: splitHostPort(env.LISTEN || '127.0.0.1:0'),
    advertise: env.ADVERTISE || '',
    name: env.NAME || defaultName,
    priority,
    leaseSeconds: envInt(env, 'LEASE_SECONDS', 30),
    onFailure: onFailure === 'closed' ? 'FAIL_CLOSED' : 'FAIL_OPEN',
    rejectStatus: envInt(env, 'REJECT_STATUS', 0),
    timeoutMs: envInt(env, 'TIMEOUT_MS', 0),
  };
}

/**
 * Serves `implementation` of `service` and keeps it registered at `point`
 * until SIGTERM / SIGINT. Resolves once the server is bound.
 *
 * spec: { point, defaultName, filters, types, service, implementation,
 *         env (default process.env) }
 */
async function serve(spec) {
  let cfg;
  try {
    cfg = settings(spec.env || process.env, spec.defaultName);
  } catch (err) {
    console.error(`[${spec.defaultName}] ${err.message}`);
    process.exit(2);
  }
  const name = cfg.name;

  const server = new grpc.Server();
  server.addService(spec.service, spec.implementation);
  const bindAddr = `${cfg.listen.host}:${cfg.listen.port}`;
  const port = await new Promise((resolve, reject) => {
    server.bindAsync(bindAddr, grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    );
  }).catch((err) => {
    log(name, `cannot listen on ${bindAddr}: ${err.message}`);
    process.exit(1);
  });
  // Port 0 asks for any free port: what sipbus must call is the one bound.
  const address = cfg.advertise || `http://${cfg.listen.host}:${port}`;
  log(name, `serving on ${cfg.listen.host}:${port}`);

  const { target, credentials } = registryTarget(cfg.registry);
  const Registry = loadProto('sipbus/extension/v1/registry.proto').sipbus.extension.v1.Registry;
  const registry = new Registry(target, credentials);

  const metadata = () => {
    const md = new grpc.Metadata();
    if (cfg.token) md.set('authorization', `Bearer ${cfg.token}`);
    return md;
  };
  const call = (method, request, deadlineMs) =>
    new Promise((resolve, reject) => {
      registry[method](request, metadata(), { deadline: Date.now() + deadlineMs }, (err, reply) =>
        err ? reject(err) : resolve(reply),
      );
    });

  const request = {
    point: spec.point,
    name,
    address,
    filters: spec.filters || [],
    types: spec.types || [],
    timeout_ms: cfg.timeoutMs,
    on_failure: cfg.onFailure,
    reject_status: cfg.rejectStatus,
    lease_seconds: cfg.leaseSeconds,
  };
  // Unset means "not sent": sipbus then applies its own default (100).
  if (cfg.priority !== undefined) request.priority = cfg.priority;

  let id = '';
  let timer = null;
  let stopping = false;
  let inflight = Promise.resolve();

  const schedule = (ms, fn) => {
    if (stopping) return;
    timer = setTimeout(() => {
      timer = null;
      inflight = fn();
    }, ms);
  };
  // A third of the lease leaves two more tries before it runs out.
  const renewEvery = (lease) => Math.max(1000, Math.floor(((lease || cfg.leaseSeconds || 30) * 1000) / 3));

  async function register() {
    try {
      const reply = await call('Register', request, CALL_DEADLINE_MS);
      if (stopping) {
        // SIGTERM came while Register was under way: leave at once.
        id = reply.id;
        return;
      }
      id = reply.id;
      process.stdout.write(`registered ${name} ${id} ${address}\n`);
      log(name, `registered as ${id}, lease ${reply.lease_seconds} s`);
      schedule(renewEvery(reply.lease_seconds), renew);
    } catch (err) {
      log(name, `register with ${cfg.registry} failed (${grpc.status[err.code] || err.code}): ${err.details || err.message}; retrying in ${RETRY_MS / 1000} s`);
      schedule(RETRY_MS, register);
    }
  }

  async function renew() {
    try {
      const reply = await call('Renew', { id }, CALL_DEADLINE_MS);
      schedule(renewEvery(reply.lease_seconds), renew);
    } catch (err) {
      if (err.code === grpc.status.NOT_FOUND) {
        // The lease lapsed (or the registry forgot us): join again.
        log(name, `lease ${id} lapsed; registering again`);
        id = '';
        return register();
      }
      log(name, `renew failed (${grpc.status[err.code] || err.code}): ${err.details || err.message}; retrying in ${RETRY_MS / 1000} s`);
      schedule(RETRY_MS, renew);
    }
  }

  async function shutdown(signal) {
    if (stopping) return;
    stopping = true;
    log(name, `${signal}: leaving`);
    if (timer) clearTimeout(timer);
    await inflight.catch(() => {});
    if (id) {
      try {
        await call('Deregister', { id }, DEREGISTER_DEADLINE_MS);
        log(name, `deregistered ${id}`);
      } catch (err) {
        // Best effort: the lease runs out on its own.
        log(name, `deregister failed: ${err.details || err.message}`);
      }
    }
    registry.close();
    // Let calls under way finish, but not forever.
    const forced = setTimeout(() => {
      server.forceShutdown();
      process.exit(0);
    }, 1000);
    server.tryShutdown(() => {
      clearTimeout(forced);
      process.exit(0);
    });
  }
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));

  inflight = register();
  return { port, address };
}

module.exports = { loadProto, unary, serve, log, PROTO_ROOT, LOADER_OPTIONS };
