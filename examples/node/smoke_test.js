'use strict';
// Smoke test: runs each example as a child process against a fake
// Registry served here, then plays sipbus's part, calling every RPC with
// realistic SDP and PIDF and checking the answers, the lease keeping,
// the bearer token and the deregistration on SIGTERM / SIGINT.
//
//   npm run smoke

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const net = require('node:net');
const readline = require('node:readline');
const { spawn } = require('node:child_process');
const grpc = require('@grpc/grpc-js');
const { loadProto } = require('./registry');

const ext = loadProto('sipbus/extension/v1/registry.proto').sipbus.extension.v1;
const sdp = loadProto('sipbus/sdp/v1/sdp.proto').sipbus.sdp.v1;
const publish = loadProto('sipbus/publish/v1/publication.proto').sipbus.publish.v1;

const TOKEN = 'smoke-secret';
const CRLF = '\r\n';

// ---------------------------------------------------------------------------
// Helpers.

async function waitFor(what, predicate, timeoutMs = 8000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = predicate();
    if (value) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

/** A fake sipbus Registry that records what it is told. */
async function fakeRegistry({ port = 0, token = '', leaseSeconds = 3 } = {}) {
  const reg = {
    registers: [],
    renews: [],
    deregisters: [],
    live: new Set(),
    next: 1,
    server: new grpc.Server(),
  };
  const authorized = (call, callback) => {
    const auth = call.metadata.get('authorization')[0];
    if (token && auth !== `Bearer ${token}`) {
      callback({ code: grpc.status.UNAUTHENTICATED, details: 'bad or missing registry token' });
      return null;
    }
    return auth || '';
  };
  reg.server.addService(ext.Registry.service, {
    Register(call, callback) {
      const auth = authorized(call, callback);
      if (auth === null) return;
      const id = `reg-${reg.next++}`;
      reg.registers.push({ request: call.request, auth, id });
      reg.live.add(id);
      callback(null, { id, lease_seconds: leaseSeconds });
    },
    Renew(call, callback) {
      const auth = authorized(call, callback);
      if (auth === null) return;
      reg.renews.push({ id: call.request.id, auth });
      if (!reg.live.has(call.request.id)) {
        callback({ code: grpc.status.NOT_FOUND, details: 'no such registration' });
        return;
      }
      callback(null, { lease_seconds: leaseSeconds });
    },
    Deregister(call, callback) {
      const auth = authorized(call, callback);
      if (auth === null) return;
      reg.deregisters.push({ id: call.request.id, auth });
      reg.live.delete(call.request.id);
      callback(null, {});
    },
    List(call, callback) {
      callback(null, { target: 'fake', chains: [] });
    },
  });
  reg.port = await new Promise((resolve, reject) =>
    reg.server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  reg.url = `http://127.0.0.1:${reg.port}`;
  reg.stop = () => new Promise((resolve) => reg.server.tryShutdown(() => resolve()));
  return reg;
}

const children = new Set();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

/** Starts an example; collects its `registered` lines and its stderr. */
function start(script, env) {
  const child = spawn(process.execPath, [path.join(__dirname, script)], {
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  const proc = { child, registered: [], stdout: [], stderr: '', exit: null };
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    proc.stdout.push(line);
    const m = /^registered (\S+) (\S+) (\S+)$/.exec(line);
    if (m) proc.registered.push({ name: m[1], id: m[2], address: m[3] });
  });
  child.stderr.on('data', (d) => {
    proc.stderr += d;
  });
  proc.exited = new Promise((resolve) =>
    child.on('exit', (code, signal) => {
      children.delete(child);
      proc.exit = { code, signal };
      resolve(proc.exit);
    }),
  );
  proc.logged = (text) => waitFor(`log "${text}"\n--- stderr:\n${proc.stderr}`, () => proc.stderr.includes(text));
  return proc;
}

function client(Service, address) {
  return new Service(address.replace(/^http:\/\//, ''), grpc.credentials.createInsecure());
}

function rpc(c, method, request) {
  return new Promise((resolve, reject) =>
    c[method](request, { deadline: Date.now() + 5000 }, (err, reply) => (err ? reject(err) : resolve(reply))),
  );
}

/** An SDP as sdp-svc hands it out: session-level lines and m= sections. */
function splitSdp(text) {
  const lines = text.split(/\r?\n/).filter(Boolean);
  const session = [];
  const sections = [];
  for (const l of lines) {
    if (l.startsWith('m=')) sections.push([l]);
    else if (sections.length) sections[sections.length - 1].push(l);
    else session.push(l);
  }
  return {
    session: session.join(CRLF),
    streams: sections.map((s, index) => ({
      index,
      media: s[0].slice(2).split(' ')[0],
      section: s.join(CRLF),
      session_lines: session.join(CRLF),
    })),
  };
}

const sdpText = (...lines) => lines.join(CRLF) + CRLF;

// ---------------------------------------------------------------------------
// text-handler

test('text-handler: registration, negotiation, lease and shutdown', async () => {
  const reg = await fakeRegistry({ token: TOKEN, leaseSeconds: 3 });
  const proc = start('text-handler.js', {
    SIPBUS_REGISTRY: reg.url,
    SIPBUS_REGISTRY_TOKEN: TOKEN,
    LEASE_SECONDS: '3',
    TEXT_ADDRESS: '203.0.113.5',
  });
  try {
    const first = await waitFor('registered line', () => proc.registered[0]);
    assert.equal(first.name, 't140');
    assert.match(first.address, /^http:\/\/127\.0\.0\.1:\d+$/);
    const { request, auth, id } = reg.registers[0];
    assert.equal(first.id, id);
    assert.equal(auth, `Bearer ${TOKEN}`);
    assert.equal(request.point, 'SDP_HANDLER');
    assert.equal(request.name, 't140');
    assert.equal(request.address, first.address);
    assert.deepEqual(request.filters, ['text']);
    assert.deepEqual(request.types, []);
    assert.equal(request.lease_seconds, 3);
    assert.equal(request.on_failure, 'FAIL_OPEN');
    assert.equal(request._priority, undefined, 'priority not sent when PRIORITY is unset');
    assert.equal(proc.stdout.length, 1, 'stdout carries the registered line only');

    const h = client(sdp.SdpHandler, first.address);

    // An audio + text call (RFC 4103 with RED): sdp-svc asks this handler
    // only about the streams whose media type it registered for.
    const offer = splitSdp(
      sdpText(
        'v=0',
        'o=alice 2890844526 2890844526 IN IP4 198.51.100.10',
        's=-',
        'c=IN IP4 198.51.100.10',
        't=0 0',
        'm=audio 49170 RTP/AVP 0 101',
        'a=rtpmap:0 PCMU/8000',
        'a=rtpmap:101 telephone-event/8000',
        'a=fmtp:101 0-15',
        'm=text 49172 RTP/AVP 98 100',
        'a=rtpmap:98 red/1000',
        'a=fmtp:98 100/100/100',
        'a=rtpmap:100 t140/1000',
        'a=fmtp:100 cps=30',
      ),
    );
    const asked = offer.streams.filter((s) => request.filters.includes(s.media));
    assert.deepEqual(asked.map((s) => s.index), [1]);
    const claim1 = await rpc(h, 'Negotiate', { session: 'call-1', offered: asked[0], endpoint: '' });
    assert.equal(claim1.result, 'claim');
    assert.equal(
      claim1.claim,
      [
        'm=text 40000 RTP/AVP 98 100',
        'c=IN IP4 203.0.113.5',
        'a=rtpmap:98 red/1000',
        'a=fmtp:98 100/100/100',
        'a=rtpmap:100 t140/1000',
        'a=fmtp:100 cps=30',
        'a=sendrecv',
      ].join(CRLF),
    );

    // Bob renumbers the payload types: the offerer gets its own back.
    const answer1 = splitSdp(
      sdpText(
        'v=0',
        'o=bob 2808844564 2808844564 IN IP4 198.51.100.20',
        's=-',
        'c=IN IP4 198.51.100.20',
        't=0 0',
        'm=audio 0 RTP/AVP 0',
        'm=text 51000 RTP/AVP 101 99',
        'a=rtpmap:101 red/1000',
        'a=fmtp:101 99/99/99',
        'a=rtpmap:99 t140/1000',
        'a=fmtp:99 cps=20',
      ),
    );
    const forwarded1 = { ...asked[0], section: claim1.claim, session_lines: 'v=0' };
    const applied1 = await rpc(h, 'Apply', {
      session: 'call-1',
      offered: asked[0],
      forwarded: forwarded1,
      answered: answer1.streams[1],
    });
    assert.equal(
      applied1.section,
      [
        'm=text 40000 RTP/AVP 98 100',
        'c=IN IP4 203.0.113.5',
        'a=rtpmap:98 red/1000',
        'a=fmtp:98 100/100/100',
        'a=rtpmap:100 t140/1000',
        'a=fmtp:100 cps=20',
        'a=sendrecv',
      ].join(CRLF),
    );
    await proc.logged('apply call-1 #1: answer');

    // SRTP, sendonly, t140 without RED: same profile, keys passed on,
    // RFC 3264 direction (sendonly -> recvonly).
    const crypto = 'a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4';
    const offered2 = {
      index: 0,
      media: 'text',
      section: ['m=text 5002 RTP/SAVP 103', 'a=rtpmap:103 t140/1000', crypto, 'a=sendonly'].join(CRLF),
      session_lines: ['v=0', 'o=- 1 1 IN IP4 198.51.100.11', 's=-', 'c=IN IP4 198.51.100.11', 't=0 0'].join(CRLF),
    };
    const claim2 = await rpc(h, 'Negotiate', { session: 'call-2', offered: offered2 });
    assert.equal(
      claim2.claim,
      ['m=text 40002 RTP/SAVP 103', 'c=IN IP4 203.0.113.5', 'a=rtpmap:103 t140/1000', crypto, 'a=sendonly'].join(CRLF),
    );
    const bobCrypto = 'a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4';
    const applied2 = await rpc(h, 'Apply', {
      session: 'call-2',
      offered: offered2,
      forwarded: { ...offered2, section: claim2.claim },
      answered: {
        index: 0,
        media: 'text',
        section: ['m=text 6000 RTP/SAVP 103', 'c=IN IP4 198.51.100.30', 'a=rtpmap:103 t140/1000', bobCrypto, 'a=recvonly'].join(CRLF),
        session_lines: 'v=0',
      },
    });
    assert.equal(
      applied2.section,
      ['m=text 40002 RTP/SAVP 103', 'c=IN IP4 203.0.113.5', 'a=rtpmap:103 t140/1000', bobCrypto, 'a=recvonly'].join(CRLF),
    );

    // Direction from the session level (recvonly -> sendonly); the other
    // leg takes t140 but not RED, so the answer has no RED either.
    const offered3 = {
      index: 0,
      media: 'text',
      section: ['m=text 5004 RTP/AVP 98 100', 'a=rtpmap:98 red/1000', 'a=fmtp:98 100/100', 'a=rtpmap:100 t140/1000'].join(CRLF),
      session_lines: ['v=0', 'o=- 2 2 IN IP4 198.51.100.12', 's=-', 't=0 0', 'a=recvonly'].join(CRLF),
    };
    const claim3 = await rpc(h, 'Negotiate', { session: 'call-3', offered: offered3 });
    assert.equal(
      claim3.claim,
      [
        'm=text 40004 RTP/AVP 98 100',
        'c=IN IP4 203.0.113.5',
        'a=rtpmap:98 red/1000',
        'a=fmtp:98 100/100',
        'a=rtpmap:100 t140/1000',
        'a=recvonly',
      ].join(CRLF),
    );
    const applied3 = await rpc(h, 'Apply', {
      session: 'call-3',
      offered: offered3,
      forwarded: { ...offered3, section: claim3.claim },
      answered: { index: 0, media: 'text', section: ['m=text 7000 RTP/AVP 100', 'a=rtpmap:100 t140/1000', 'a=sendonly'].join(CRLF) },
    });
    assert.equal(
      applied3.section,
      ['m=text 40004 RTP/AVP 100', 'c=IN IP4 203.0.113.5', 'a=rtpmap:100 t140/1000', 'a=sendonly'].join(CRLF),
    );

    // The other leg refused the stream: declined towards the offerer.
    const refused = await rpc(h, 'Apply', {
      session: 'call-3',
      offered: offered3,
      forwarded: { ...offered3, section: claim3.claim },
      answered: { index: 0, media: 'text', section: 'm=text 0 RTP/AVP 100' },
    });
    assert.equal(refused.section, 'm=text 0 RTP/AVP 98');

    // Text without t140: declined, the next handler is asked.
    const noT140 = await rpc(h, 'Negotiate', {
      session: 'call-4',
      offered: { index: 0, media: 'text', section: 'm=text 5006 RTP/AVP 96\r\na=rtpmap:96 x-text/1000' },
    });
    assert.equal(noT140.result, 'decline');
    assert.match(noT140.decline.reason, /t140/);

    // Odd input gets a neutral answer, not an error.
    const empty = await rpc(h, 'Negotiate', {});
    assert.equal(empty.result, 'decline');
    assert.equal((await rpc(h, 'Apply', {})).section, 'm=text 0 RTP/AVP 0');
    assert.deepEqual(await rpc(h, 'Ended', {}), {});

    // A re-offer keeps the stream's port; once ended it is let go.
    const again = await rpc(h, 'Negotiate', { session: 'call-1', offered: asked[0] });
    assert.equal(again.claim, claim1.claim);
    assert.deepEqual(await rpc(h, 'Ended', { session: 'call-1', stream: asked[0] }), {});
    await proc.logged('ended call-1 #1: port 40000 released');
    const fresh = await rpc(h, 'Negotiate', { session: 'call-1', offered: asked[0] });
    assert.match(fresh.claim, /^m=text 40006 /);
    h.close();

    // The lease is renewed (3 s lease: every second), with the token.
    await waitFor('a renew', () => reg.renews.find((r) => r.id === id));
    assert.ok(reg.renews.every((r) => r.auth === `Bearer ${TOKEN}`));

    // The registry lost us: NOT_FOUND on renew, so register again.
    reg.live.delete(id);
    const second = await waitFor('registered again', () => proc.registered[1]);
    assert.notEqual(second.id, id);
    assert.equal(second.address, first.address);

    // SIGTERM: deregister (the current id), exit 0.
    proc.child.kill('SIGTERM');
    const exit = await proc.exited;
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.deepEqual(reg.deregisters, [{ id: second.id, auth: `Bearer ${TOKEN}` }]);
  } finally {
    proc.child.kill('SIGKILL');
    await reg.stop();
  }
});

// ---------------------------------------------------------------------------
// presence-note

const pidf = (entity, note, basic = 'open') =>
  Buffer.from(
    [
      '<?xml version="1.0" encoding="UTF-8"?>',
      `<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="${entity}">`,
      '  <tuple id="t8a1">',
      `    <status><basic>${basic}</basic></status>`,
      '    <contact priority="0.8">sip:alice@192.0.2.4;transport=tcp</contact>',
      '  </tuple>',
      '  <dm:person id="p1">',
      '    <rpid:activities><rpid:lunch/></rpid:activities>',
      note === undefined ? '' : `    <dm:note xml:lang="en">${note}</dm:note>`,
      '  </dm:person>',
      '</presence>',
      '',
    ].join('\r\n'),
  );

const publication = (body, extra = {}) => ({
  package: 'presence',
  resource: 'sip:alice@example.com',
  etag: '',
  content_type: 'application/pidf+xml',
  body,
  publisher: 'sip:alice@example.com',
  expires_at_ms: String(Date.now() + 3600000),
  ...extra,
});

test('presence-note: retries until the registry answers, then handles publications', async () => {
  // Nothing listens on the registry's port at first: it must keep trying.
  const port = await freePort();
  const proc = start('presence-note.js', {
    SIPBUS_REGISTRY: `http://127.0.0.1:${port}`,
    SIPBUS_REGISTRY_TOKEN: TOKEN,
    PRIORITY: '20',
    ON_FAILURE: 'closed',
    REJECT_STATUS: '480',
    TIMEOUT_MS: '250',
    LEASE_SECONDS: '3',
  });
  let reg;
  try {
    await waitFor('two failed registers', () => (proc.stderr.match(/register with .* failed/g) || []).length >= 2);
    assert.equal(proc.exit, null, 'still running without a registry');
    assert.equal(proc.registered.length, 0);

    reg = await fakeRegistry({ port, token: TOKEN, leaseSeconds: 3 });
    const first = await waitFor('registered line', () => proc.registered[0]);
    assert.equal(first.name, 'presence-note');
    const { request, auth } = reg.registers[0];
    assert.equal(auth, `Bearer ${TOKEN}`);
    assert.equal(request.point, 'PUBLICATION_HANDLER');
    assert.deepEqual(request.filters, ['presence']);
    assert.deepEqual(request.types, ['application/pidf+xml']);
    assert.equal(request.priority, 20);
    assert.equal(request._priority, 'priority');
    assert.equal(request.on_failure, 'FAIL_CLOSED');
    assert.equal(request.reject_status, 480);
    assert.equal(request.timeout_ms, 250);

    const h = client(publish.PublicationHandler, first.address);

    // PIDF is accepted as published (an empty accept).
    const body1 = pidf('pres:alice@example.com', 'Out to lunch &amp; back at 2 &#x263A;');
    const ok = await rpc(h, 'NewPublication', { publication: publication(body1) });
    assert.equal(ok.decision, 'accept');
    assert.equal(ok.accept.length, 0);

    // Anything else is refused with 400 Not PIDF.
    const notPidf = [
      Buffer.from('<presence xmlns="urn:ietf:params:xml:ns:cpim-pidf" entity="pres:a@b"/>'),
      Buffer.from('<presence xmlns="urn:ietf:params:xml:ns:pidf"><tuple id="x"></presence>'),
      Buffer.from('Basic: open\r\n'),
      Buffer.from('<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"/>'),
      Buffer.alloc(0),
    ];
    for (const body of notPidf) {
      const r = await rpc(h, 'NewPublication', { publication: publication(body) });
      assert.equal(r.decision, 'reject', body.toString());
      assert.deepEqual(r.reject, { status: 400, reason: 'Not PIDF' });
    }
    assert.equal((await rpc(h, 'NewPublication', {})).decision, 'reject');

    // Stored: the note is remembered and logged, entities decoded.
    await rpc(h, 'StateChanged', { publication: publication(body1, { etag: 'e1' }), change: 'CHANGE_INITIALIZED' });
    await proc.logged('sip:alice@example.com note: "Out to lunch & back at 2 \u263A"');
    // A refresh (new tag, same body) and then its removal: forgotten.
    await rpc(h, 'StateChanged', { publication: publication(body1, { etag: 'e2' }), change: 'CHANGE_REFRESHED' });
    await rpc(h, 'StateChanged', { publication: publication(body1, { etag: 'e1' }), change: 'CHANGE_REMOVED' });
    assert.ok(!proc.stderr.includes('note forgotten'), 'a stale tag does not forget the note');
    await rpc(h, 'StateChanged', { publication: publication(body1, { etag: 'e2' }), change: 'CHANGE_EXPIRED' });
    await proc.logged('sip:alice@example.com note forgotten (expired)');
    assert.deepEqual(await rpc(h, 'StateChanged', {}), {});

    // Compose: the newest publication (the last) wins.
    const body2 = pidf('pres:alice@example.com', 'In a meeting', 'closed');
    const composed = await rpc(h, 'Compose', {
      package: 'presence',
      resource: 'sip:alice@example.com',
      publications: [publication(body1, { etag: 'a' }), publication(body2, { etag: 'b' })],
    });
    assert.equal(composed.content_type, 'application/pidf+xml');
    assert.deepEqual(composed.body, body2);
    const none = await rpc(h, 'Compose', { package: 'presence', resource: 'sip:bob@example.com' });
    assert.equal(none.content_type, '');
    assert.equal(none.body.length, 0);
    h.close();

    await waitFor('a renew', () => reg.renews.length > 0);

    // SIGINT behaves as SIGTERM.
    proc.child.kill('SIGINT');
    assert.deepEqual(await proc.exited, { code: 0, signal: null });
    assert.deepEqual(reg.deregisters, [{ id: first.id, auth: `Bearer ${TOKEN}` }]);
  } finally {
    proc.child.kill('SIGKILL');
    if (reg) await reg.stop();
  }
});

test('a registry that refuses the token is reported and retried', async () => {
  const reg = await fakeRegistry({ token: TOKEN });
  const proc = start('presence-note.js', { SIPBUS_REGISTRY: reg.url, SIPBUS_REGISTRY_TOKEN: 'wrong' });
  try {
    await waitFor('two refusals', () => (proc.stderr.match(/UNAUTHENTICATED/g) || []).length >= 2);
    assert.equal(proc.registered.length, 0);
    assert.equal(proc.exit, null);
    // Leaving without a registration: nothing to deregister, still exit 0.
    proc.child.kill('SIGTERM');
    assert.deepEqual(await proc.exited, { code: 0, signal: null });
    assert.equal(reg.deregisters.length, 0);
  } finally {
    proc.child.kill('SIGKILL');
    await reg.stop();
  }
});
