#!/usr/bin/env node
// A command-line SIP user agent over WebSocket (RFC 7118) for sipbus's
// integration tests: JsSIP with jssip-node-websocket (WebSocket-Node).
//
// stdout carries only JSON lines, one event per line; JsSIP's debug output
// (enabled with DEBUG=JsSIP:*) goes to stderr.
//
// Exit codes: 0 the requested work succeeded, 1 a SIP failure (registration
// or MESSAGE refused), 2 timeout, 3 transport failure (WebSocket refused or
// closed), 64 bad usage, 130/143 SIGINT/SIGTERM.
'use strict';

const util = require('util');
const { parseOptions } = require('./cli');

// JsSIP's Logger writes debug lines with console.info, which is stdout in
// Node: send every console method to stderr before JsSIP is loaded.
for (const method of ['log', 'info', 'debug', 'warn', 'error', 'trace']) {
  console[method] = (...args) => process.stderr.write(`${util.format(...args)}\n`);
}

const USAGE = `usage: node ua.js --ws URL --uri SIP-URI [options]

  --ws URL             ws://127.0.0.1:PORT or wss://127.0.0.1:PORT
  --uri URI            the account, e.g. sip:alice@127.0.0.1 (registered)
  --password SECRET    digest password (user: the URI's user part)
  --origin ORIGIN      HTTP Origin header of the WebSocket handshake
  --send URI           after registering, send a MESSAGE to URI ...
  --text TEXT          ... with this text/plain body
  --wait-messages N    after registering, stay up until N MESSAGEs came in
                       (each answered 200)
  --timeout-ms T       give up after T ms (default 15000)

stdout: one JSON object per line, e.g. {"event":"registered"}.
Exit: 0 success, 1 SIP failure, 2 timeout, 3 transport failure, 64 usage.
For wss with a test CA, set NODE_EXTRA_CA_CERTS=/path/to/ca.pem.
Set DEBUG=JsSIP:* (and/or websocket:*) for a debug log on stderr.
`;

const EXIT_OK = 0;
const EXIT_SIP = 1;
const EXIT_TIMEOUT = 2;
const EXIT_TRANSPORT = 3;
const EXIT_USAGE = 64;

function usage(message) {
  if (message) process.stderr.write(`ua.js: ${message}\n`);
  (message ? process.stderr : process.stdout).write(USAGE);
  process.exit(message ? EXIT_USAGE : EXIT_OK);
}

function parseArgs(argv) {
  const valued = ['ws', 'uri', 'password', 'origin', 'send', 'text', 'wait-messages', 'timeout-ms'];
  const opts = parseOptions(argv, { valued }, usage);
  if (!opts.ws) usage('--ws is required');
  if (!/^wss?:\/\//i.test(opts.ws)) usage('--ws must be a ws:// or wss:// URL');
  if (!opts.uri) usage('--uri is required');
  if (opts.send !== undefined && opts.text === undefined) usage('--send needs --text');
  if (opts.text !== undefined && opts.send === undefined) usage('--text needs --send');
  opts.waitMessages = opts.int('wait-messages', 0);
  opts.timeoutMs = opts.int('timeout-ms', 15000);
  return opts;
}

const opts = parseArgs(process.argv.slice(2));

const JsSIP = require('jssip');
const NodeWebSocket = require('jssip-node-websocket');

if (!process.env.DEBUG) JsSIP.debug.disable();

function emit(obj) {
  // Writes to pipes and files are synchronous in Node on Linux: each line is
  // out before the next statement runs.
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

// jssip-node-websocket reports a failed handshake only as close code 1006
// "connection failed". WebSocket-Node's client says why (HTTP status of a
// refused upgrade, TLS error, ECONNREFUSED): listen to it, ahead of the
// W3C wrapper's own listener (which removes all listeners).
class DetailedNodeWebSocket extends NodeWebSocket {
  constructor(url, options) {
    super(url, options);
    this.failure = null;
  }

  connect() {
    const before = this._ws;
    super.connect();
    const ws = this._ws;
    if (!ws || ws === before || !ws._client) return;
    this.failure = null;
    ws._client.prependListener('connectFailed', (error) => {
      const message = error && error.message ? error.message : String(error);
      const m = /non-101 status: (\d{3})/.exec(message);
      this.failure = {
        status: m ? Number(m[1]) : null,
        reason: message.split('\n')[0],
        errno: error && error.code ? error.code : undefined,
      };
    });
  }
}

const uri = /^sips?:/i.test(opts.uri) ? opts.uri : `sip:${opts.uri}`;
const socket = new DetailedNodeWebSocket(opts.ws, opts.origin ? { origin: opts.origin } : {});

let ua;
try {
  ua = new JsSIP.UA({
    sockets: [socket],
    uri,
    password: opts.password || null,
    register: true,
    register_expires: 300,
    session_timers: false,
    // One connection attempt matters; recovery is not wanted here (the
    // process ends on the first transport failure anyway).
    connection_recovery_min_interval: 2,
    connection_recovery_max_interval: 30,
  });
} catch (error) {
  usage(`bad configuration: ${error.message}`);
}

let finishing = false;
let registered = false;
let sendDone = opts.send === undefined;
let received = 0;
let messageStarted = false;

function statusOf(e) {
  return e && e.response && e.response.status_code ? e.response.status_code : null;
}

function exitWith(code) {
  process.stdout.write('', () => process.exit(code));
}

// End the run: on success say "done" after unregistering; on any path
// unregister (when registered) and stop the UA, then exit.
function finish(code) {
  if (finishing) return;
  finishing = true;
  clearTimeout(timeoutTimer);
  const stopAndExit = () => {
    try {
      ua.stop();
    } catch (error) {
      // ignore
    }
    if (code === EXIT_OK) emit({ event: 'done' });
    exitWith(code);
  };
  if (registered && code !== EXIT_TRANSPORT) {
    let settled = false;
    const settle = () => {
      if (settled) return;
      settled = true;
      stopAndExit();
    };
    ua.once('unregistered', (e) => {
      emit({ event: 'unregistered', status: statusOf(e), cause: (e && e.cause) || null });
      settle();
    });
    setTimeout(settle, 3000);
    try {
      ua.unregister();
    } catch (error) {
      settle();
    }
  } else {
    stopAndExit();
  }
}

function checkDone() {
  if (finishing || !registered) return;
  if (sendDone && received >= opts.waitMessages) finish(EXIT_OK);
}

const timeoutTimer = setTimeout(() => {
  emit({ event: 'timeout', registered, received, waiting_for: opts.waitMessages });
  finish(EXIT_TIMEOUT);
}, opts.timeoutMs);

ua.on('connected', () => {
  emit({ event: 'connected' });
});

ua.on('disconnected', (e) => {
  if (finishing) return;
  const failure = socket.failure || {};
  emit({
    event: 'disconnected',
    code: e && e.code !== undefined ? e.code : null,
    reason: failure.reason || (e && e.reason) || null,
    status: failure.status !== undefined ? failure.status : null,
  });
  finish(EXIT_TRANSPORT);
});

ua.on('registered', () => {
  if (finishing || registered) return;
  registered = true;
  emit({ event: 'registered' });
  if (opts.send !== undefined && !messageStarted) {
    messageStarted = true;
    ua.sendMessage(opts.send, opts.text, {
      contentType: 'text/plain',
      eventHandlers: {
        succeeded: (e) => {
          emit({ event: 'message_sent', status: statusOf(e) });
          sendDone = true;
          checkDone();
        },
        failed: (e) => {
          if (finishing) return;
          emit({ event: 'message_failed', cause: (e && e.cause) || null, status: statusOf(e) });
          finish(EXIT_SIP);
        },
      },
    });
  }
  checkDone();
});

ua.on('registrationFailed', (e) => {
  if (finishing) return;
  emit({ event: 'registration_failed', cause: (e && e.cause) || null, status: statusOf(e) });
  finish(EXIT_SIP);
});

ua.on('newMessage', (e) => {
  if (e.originator !== 'remote') return;
  const request = e.request;
  // JsSIP answers 200 itself after this handler unless it was answered here.
  try {
    e.message.accept();
  } catch (error) {
    // already answered
  }
  received += 1;
  emit({
    event: 'message_received',
    from: request.from && request.from.uri ? request.from.uri.toString() : null,
    body: request.body === undefined ? null : request.body,
  });
  checkDone();
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    emit({ event: 'signal', signal });
    finish(signal === 'SIGINT' ? 130 : 143);
  });
}

ua.start();
