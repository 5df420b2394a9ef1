#!/usr/bin/env node
// A real-browser WebRTC call through sipbus: two headless Chromiums, each a
// JsSIP phone registered over wss, the caller calls the callee, both read
// RTP stats after a few seconds, the caller hangs up.
//
//   node webrtc_call.js --wss wss://127.0.0.1:PORT --cert server-cert.pem \
//     --domain 127.0.0.1 --caller alice:alice-secret --callee bob:bob-secret \
//     [--seconds 6] [--timeout-ms 60000] [--http-port 0] [--debug]
//   node webrtc_call.js --self-check [--seconds 3]
//
// --self-check: no SIP; the pages exchange SDP through this driver, which
// shows whether two headless Chromiums on this machine get ICE, DTLS and
// SRTP going at all.
//
// stdout: one JSON object per line: the driver's own events, every report
// the pages POST ({role, event, ...}), and last
// {"event":"result","ok":true|false,...}.
// Exit: 0 both sides established with audio received and DTLS-SRTP SDPs,
// 1 failure, 2 timeout, 3 a page's WebSocket could not connect, 64 usage.
// Browser logs (stderr) are printed to stderr on failure.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');
const { spawn } = require('child_process');
const { bundleJsSIP } = require('./jssip_bundle');
const { parseOptions } = require('./cli');

const EXIT_OK = 0;
const EXIT_FAIL = 1;
const EXIT_TIMEOUT = 2;
const EXIT_TRANSPORT = 3;
const EXIT_USAGE = 64;

const USAGE = `usage: node webrtc_call.js --wss URL --cert PEM --domain DOMAIN \\
         --caller USER:PASSWORD --callee USER:PASSWORD [options]
       node webrtc_call.js --self-check [options]

  --wss URL           sipbus's wss listener, e.g. wss://127.0.0.1:5443
  --cert PEM          sipbus's server certificate (the browsers trust its key
                      via --ignore-certificate-errors-spki-list)
  --domain DOMAIN     the registrar's domain (sip:USER@DOMAIN)
  --caller U:P        the calling account
  --callee U:P        the called account
  --seconds N         how long the call lasts before stats are read (6)
  --timeout-ms T      give up after T ms (60000)
  --http-port P       port of the page server on 127.0.0.1 (0: any); pages
                      send Origin http://127.0.0.1:P
  --debug             JsSIP debug in the pages' console (in the browser logs)
  --self-check        no SIP: the pages exchange SDP through this driver

CHROMIUM=/path/to/chromium overrides /usr/bin/chromium.
Exit: 0 ok, 1 failure, 2 timeout, 3 page WebSocket failed, 64 usage.
`;

function usage(message) {
  if (message) process.stderr.write(`webrtc_call.js: ${message}\n`);
  (message ? process.stderr : process.stdout).write(USAGE);
  process.exit(message ? EXIT_USAGE : EXIT_OK);
}

function parseArgs(argv) {
  const valued = ['wss', 'cert', 'domain', 'caller', 'callee', 'seconds', 'timeout-ms', 'http-port'];
  const opts = parseOptions(argv, { valued, flags: ['self-check', 'debug'] }, usage);
  opts.seconds = opts.int('seconds', 6);
  opts.timeoutMs = opts.int('timeout-ms', 60000);
  opts.httpPort = opts.int('http-port', 0);
  opts.selfCheck = Boolean(opts['self-check']);
  const account = (name) => {
    const value = opts[name];
    if (!value) usage(`--${name} is required`);
    const i = value.indexOf(':');
    if (i <= 0) usage(`--${name} must be USER:PASSWORD`);
    return { user: value.slice(0, i), password: value.slice(i + 1) };
  };
  if (opts.selfCheck) {
    opts.callerAccount = { user: 'caller', password: '' };
    opts.calleeAccount = { user: 'callee', password: '' };
  } else {
    for (const name of ['wss', 'cert', 'domain']) if (!opts[name]) usage(`--${name} is required`);
    if (!/^wss?:\/\//i.test(opts.wss)) usage('--wss must be a wss:// (or ws://) URL');
    opts.callerAccount = account('caller');
    opts.calleeAccount = account('callee');
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));

function emit(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

// SHA-256 of the certificate's SubjectPublicKeyInfo, base64: what
// --ignore-certificate-errors-spki-list takes.
function spkiHash(pemFile) {
  const cert = new crypto.X509Certificate(fs.readFileSync(pemFile));
  const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
  return crypto.createHash('sha256').update(spki).digest('base64');
}

let spki = null;
if (!opts.selfCheck) {
  try {
    spki = spkiHash(opts.cert);
  } catch (error) {
    usage(`--cert ${opts.cert}: ${error.message}`);
  }
}

const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
if (!fs.existsSync(chromiumPath)) {
  process.stderr.write(`webrtc_call.js: no Chromium at ${chromiumPath} (apt-get install -y chromium, or set CHROMIUM)\n`);
  process.exit(EXIT_FAIL);
}

// --- state ----------------------------------------------------------------

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'sipbus-webrtc-'));
const browsers = {}; // role -> { child, pid, logFile, exited }
const reports = { caller: [], callee: [] };
const stats = {};
const ended = {};
const signals = { caller: [], callee: [] }; // self-check SDP mailboxes
let finished = false;
let server = null;
let startedCaller = false;
let jssipSource = null;

function latest(role, event) {
  const list = reports[role] || [];
  for (let i = list.length - 1; i >= 0; i--) if (list[i].event === event) return list[i];
  return null;
}

// --- HTTP server ------------------------------------------------------------

const pageDir = path.join(__dirname, 'webrtc');

function send(res, status, type, body) {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > 1 << 20) {
        reject(new Error('body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

async function handle(req, res) {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (req.method === 'GET' && (url.pathname === '/' || url.pathname === '/page.html')) {
    return send(res, 200, 'text/html; charset=utf-8', fs.readFileSync(path.join(pageDir, 'page.html')));
  }
  if (req.method === 'GET' && url.pathname === '/page.js') {
    return send(res, 200, 'text/javascript; charset=utf-8', fs.readFileSync(path.join(pageDir, 'page.js')));
  }
  if (req.method === 'GET' && url.pathname === '/jssip.js') {
    if (!jssipSource) jssipSource = bundleJsSIP(__dirname);
    return send(res, 200, 'text/javascript; charset=utf-8', jssipSource);
  }
  if (req.method === 'POST' && url.pathname === '/report') {
    let report;
    try {
      report = JSON.parse(await readBody(req));
    } catch (error) {
      return send(res, 400, 'text/plain', 'bad json');
    }
    send(res, 204, 'text/plain', '');
    onReport(report);
    return undefined;
  }
  if (url.pathname === '/signal' && opts.selfCheck) {
    if (req.method === 'POST') {
      const to = url.searchParams.get('to');
      if (!signals[to]) return send(res, 400, 'text/plain', 'bad role');
      signals[to].push(JSON.parse(await readBody(req)));
      return send(res, 204, 'text/plain', '');
    }
    const role = url.searchParams.get('role');
    if (!signals[role]) return send(res, 400, 'text/plain', 'bad role');
    const list = signals[role].splice(0);
    return send(res, 200, 'application/json', JSON.stringify(list));
  }
  if (url.pathname === '/favicon.ico') return send(res, 204, 'text/plain', '');
  return send(res, 404, 'text/plain', 'not found');
}

// --- browsers -------------------------------------------------------------

function pageUrl(role) {
  const account = role === 'caller' ? opts.callerAccount : opts.calleeAccount;
  const q = new URLSearchParams({
    role,
    mode: opts.selfCheck ? 'self-check' : 'sip',
    user: account.user,
    password: account.password,
    seconds: String(opts.seconds),
  });
  if (!opts.selfCheck) {
    q.set('wss', opts.wss);
    q.set('domain', opts.domain);
    q.set('callee', opts.calleeAccount.user);
  }
  if (opts.debug) q.set('debug', '1');
  return `http://127.0.0.1:${server.address().port}/page.html?${q}`;
}

function chromiumArgs(role) {
  const profile = path.join(tmpRoot, `profile-${role}`);
  fs.mkdirSync(profile);
  const args = [
    '--headless=new',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--no-default-browser-check',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-extensions',
    '--use-fake-device-for-media-stream',
    '--use-fake-ui-for-media-stream',
    '--disable-features=WebRtcHideLocalIpsWithMdns',
    // Gather a 127.0.0.1 host candidate; the page sends only loopback ones.
    '--allow-loopback-in-peer-connection',
    '--enable-logging=stderr',
    '--v=0',
    `--user-data-dir=${profile}`,
  ];
  if (spki) args.push(`--ignore-certificate-errors-spki-list=${spki}`);
  args.push(pageUrl(role));
  return args;
}

function startBrowser(role) {
  const logFile = path.join(tmpRoot, `${role}.log`);
  const log = fs.openSync(logFile, 'w');
  const child = spawn(chromiumPath, chromiumArgs(role), {
    stdio: ['ignore', log, log],
    // Own process group, so its helper processes can be ended with it.
    detached: true,
  });
  fs.closeSync(log);
  const entry = { child, pid: child.pid, logFile, exited: false };
  browsers[role] = entry;
  child.on('exit', (code, signal) => {
    entry.exited = true;
    if (!finished) {
      emit({ event: 'browser_exited', role, code, signal });
      finish(EXIT_FAIL, `${role} browser exited (code ${code}, signal ${signal})`);
    }
  });
  child.on('error', (error) => {
    entry.exited = true;
    if (!finished) finish(EXIT_FAIL, `${role} browser failed to start: ${error.message}`);
  });
  emit({ event: 'browser_started', role, pid: child.pid });
}

function waitExit(entry, ms) {
  if (entry.exited) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    entry.child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

function signalGroup(pid, sig) {
  try {
    process.kill(-pid, sig); // the browser's process group (detached spawn)
  } catch (error) {
    try {
      process.kill(pid, sig);
    } catch (error2) {
      // already gone
    }
  }
}

async function stopBrowsers() {
  const entries = Object.values(browsers);
  for (const entry of entries) if (!entry.exited) signalGroup(entry.pid, 'SIGTERM');
  await Promise.all(entries.map((entry) => waitExit(entry, 3000)));
  for (const entry of entries) {
    // Helpers (renderer, zygote) may outlive the main process: end the group.
    signalGroup(entry.pid, 'SIGKILL');
  }
  await Promise.all(entries.map((entry) => waitExit(entry, 2000)));
}

function tail(file, lines) {
  try {
    const text = fs.readFileSync(file, 'utf8').split('\n');
    return text.slice(-lines).join('\n');
  } catch (error) {
    return '';
  }
}

// --- verdict ----------------------------------------------------------------

const PROFILE = 'UDP/TLS/RTP/SAVPF';

function sideProblems(role) {
  const s = stats[role];
  if (!s) return [`${role}: no stats`];
  const problems = [];
  if (!s.established) problems.push(`${role}: not established (connectionState ${s.connectionState})`);
  if (!(s.packetsReceived > 0)) problems.push(`${role}: no RTP received`);
  if (!(s.packetsSent > 0)) problems.push(`${role}: no RTP sent`);
  if (!s.localSdpHasFingerprint) problems.push(`${role}: local SDP has no a=fingerprint`);
  if (!s.remoteSdpHasFingerprint) problems.push(`${role}: remote SDP has no a=fingerprint`);
  if (s.remoteProto !== PROFILE) problems.push(`${role}: remote SDP profile ${s.remoteProto}, not ${PROFILE}`);
  if (s.localProto && s.localProto !== PROFILE) problems.push(`${role}: local SDP profile ${s.localProto}, not ${PROFILE}`);
  return problems;
}

function summary(role) {
  const s = stats[role];
  if (!s) return null;
  const keys = ['established', 'packetsSent', 'packetsReceived', 'bytesReceived', 'codec', 'dtlsState',
    'srtpCipher', 'localSdpHasFingerprint', 'remoteSdpHasFingerprint', 'remoteProto',
    'localCandidate', 'remoteCandidate'];
  const out = {};
  for (const k of keys) out[k] = s[k] === undefined ? null : s[k];
  return out;
}

async function finish(code, reason) {
  if (finished) return;
  finished = true;
  clearTimeout(timeoutTimer);
  clearTimeout(endedTimer);
  const problems = code === EXIT_OK ? [] : [reason].concat(
    code === EXIT_TIMEOUT ? ['caller', 'callee'].flatMap(sideProblems) : [],
  );
  await stopBrowsers();
  if (server) server.close();
  if (code !== EXIT_OK) {
    for (const [role, entry] of Object.entries(browsers)) {
      process.stderr.write(`--- ${role} browser log (last 40 lines of ${entry.logFile}) ---\n${tail(entry.logFile, 40)}\n`);
    }
  }
  try {
    fs.rmSync(tmpRoot, { recursive: true, force: true });
  } catch (error) {
    process.stderr.write(`webrtc_call.js: could not remove ${tmpRoot}: ${error.message}\n`);
  }
  emit({
    event: 'result',
    ok: code === EXIT_OK,
    exit: code,
    problems,
    caller: summary('caller'),
    callee: summary('callee'),
    ended: { caller: Boolean(ended.caller), callee: Boolean(ended.callee) },
  });
  process.stdout.write('', () => process.exit(code));
}

let endedTimer = null;

function checkComplete() {
  if (!stats.caller || !stats.callee) return;
  const problems = ['caller', 'callee'].flatMap(sideProblems);
  if (problems.length) {
    finish(EXIT_FAIL, problems.join('; '));
    return;
  }
  // Verdict is in; give the hang-up a moment to show up as "ended" on both.
  if (ended.caller && ended.callee) {
    finish(EXIT_OK);
  } else if (!endedTimer) {
    endedTimer = setTimeout(() => finish(EXIT_OK), 8000);
  }
}

function onReport(report) {
  if (finished) return;
  const role = report.role;
  if (!reports[role]) {
    emit({ event: 'bad_report', report });
    return;
  }
  reports[role].push(report);
  emit(report);
  switch (report.event) {
    case 'registered':
    case 'ready':
      if (role === 'callee' && !startedCaller) {
        startedCaller = true;
        startBrowser('caller');
      }
      break;
    case 'disconnected':
      if (!report.registered) finish(EXIT_TRANSPORT, `${role}: WebSocket to ${opts.wss} failed (code ${report.code})`);
      break;
    case 'registration_failed':
      finish(EXIT_FAIL, `${role}: registration failed: ${report.cause} (${report.status})`);
      break;
    case 'call_failed':
      finish(EXIT_FAIL, `${role}: call failed: ${report.cause} (${report.status})`);
      break;
    case 'error':
      finish(EXIT_FAIL, `${role}: page error: ${report.message}`);
      break;
    case 'stats':
      stats[role] = report;
      checkComplete();
      break;
    case 'ended':
      ended[role] = true;
      if (stats.caller && stats.callee) checkComplete();
      else if (!stats[role]) finish(EXIT_FAIL, `${role}: call ended before stats (${report.cause})`);
      break;
    default:
      break;
  }
}

// --- run ------------------------------------------------------------------

const timeoutTimer = setTimeout(() => {
  emit({ event: 'timeout', ms: opts.timeoutMs });
  finish(EXIT_TIMEOUT, `timeout after ${opts.timeoutMs} ms`);
}, opts.timeoutMs);

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => finish(sig === 'SIGINT' ? 130 : 143, `got ${sig}`));
}

server = http.createServer((req, res) => {
  handle(req, res).catch((error) => {
    if (!res.headersSent) send(res, 500, 'text/plain', String(error && error.message));
  });
});
server.on('error', (error) => finish(EXIT_FAIL, `page server: ${error.message}`));
server.listen(opts.httpPort, '127.0.0.1', () => {
  const port = server.address().port;
  emit({ event: 'http_listening', url: `http://127.0.0.1:${port}/`, origin: `http://127.0.0.1:${port}`, spki });
  startBrowser('callee');
});
