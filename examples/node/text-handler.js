'use strict';
// An SDP handler for real-time text: RFC 4103 (T.140 over RTP), with RFC
// 2198 redundancy (`red`) when the offerer has it. It registers for the
// `text` media type, so sdp-svc asks it only about m=text streams; audio
// and video of the same offer go to their own handlers.
//
// It negotiates as a text relay would: the stream is offered on the other
// leg from this handler's own address (TEXT_ADDRESS, a port per stream),
// and the offerer gets an answer pointing at the same place. The example
// carries no media itself; a real relay would open those ports.
//
// Contract: proto/sipbus/sdp/v1/sdp.proto (service SdpHandler). Sections
// travel as their lines, "m=" first, joined by CRLF.

const net = require('node:net');
const { loadProto, unary, serve, log } = require('./registry');

const NAME = process.env.NAME || 't140';

function config() {
  const port = Number((process.env.TEXT_PORT || '0').trim());
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`TEXT_PORT=${process.env.TEXT_PORT} is not a port`);
  }
  const address = (process.env.TEXT_ADDRESS || '127.0.0.1').trim();
  if (!net.isIP(address)) throw new Error(`TEXT_ADDRESS=${address} is not an IP address`);
  return { port, address };
}

let cfg;
try {
  cfg = config();
} catch (err) {
  console.error(`[${NAME}] ${err.message}`);
  process.exit(2);
}

// ---------------------------------------------------------------------------
// Ports. RTP takes an even port and RTCP the odd one above it, hence the
// step of 2. A stream keeps its port across re-offers (same session, same
// m= index) until Ended.

const FIRST_PORT = 40000;
const LAST_PORT = 65534;
let nextPort = FIRST_PORT;
const streamPorts = new Map(); // "<session>#<index>" -> port

function portFor(session, index) {
  if (cfg.port) return cfg.port;
  const key = `${session}#${index}`;
  let port = streamPorts.get(key);
  if (port === undefined) {
    port = nextPort;
    nextPort = nextPort + 2 > LAST_PORT ? FIRST_PORT : nextPort + 2;
    streamPorts.set(key, port);
  }
  return port;
}

// ---------------------------------------------------------------------------
// Just enough SDP: lines, the m= line, rtpmap / fmtp, direction.

/** The `x=value` lines of a section (or of session-level text). */
function sdpLines(text) {
  return String(text || '')
    .split(/\r?\n/)
    .filter((l) => l.length >= 2 && l[1] === '=')
    .map((l) => ({ type: l[0], value: l.slice(2) }));
}

/** `<media> <port>[/<n>] <proto> <fmt>...`, or null. */
function parseMLine(lines) {
  const first = lines[0];
  if (!first || first.type !== 'm') return null;
  const f = first.value.trim().split(/ +/);
  if (f.length < 4) return null;
  const port = Number(f[1].split('/')[0]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) return null;
  return { media: f[0], port, proto: f[2], formats: f.slice(3) };
}

/** `a=name:value` -> { name, value } (value '' for a flag). */
function attribute(line) {
  if (line.type !== 'a') return null;
  const i = line.value.indexOf(':');
  return i < 0
    ? { name: line.value.trim(), value: '' }
    : { name: line.value.slice(0, i).trim(), value: line.value.slice(i + 1).trim() };
}

/** payload type -> { encoding (lower case), rate, fmtp } */
function payloadMap(lines) {
  const map = new Map();
  const entry = (pt) => {
    if (!map.has(pt)) map.set(pt, { encoding: '', rate: '', fmtp: '' });
    return map.get(pt);
  };
  for (const line of lines) {
    const a = attribute(line);
    if (!a || (a.name !== 'rtpmap' && a.name !== 'fmtp')) continue;
    const sp = a.value.indexOf(' ');
    if (sp <= 0) continue;
    const pt = a.value.slice(0, sp);
    const rest = a.value.slice(sp + 1).trim();
    if (a.name === 'rtpmap') {
      const [encoding, rate] = rest.split('/');
      Object.assign(entry(pt), { encoding: encoding.toLowerCase(), rate: rate || '' });
    } else {
      entry(pt).fmtp = rest;
    }
  }
  return map;
}

const DIRECTIONS = ['sendrecv', 'sendonly', 'recvonly', 'inactive'];

/** The stream's direction: its own attribute, else the session's, else sendrecv. */
function direction(lines, sessionLines) {
  for (const set of [lines, sessionLines]) {
    for (const line of set) {
      const a = attribute(line);
      if (a && DIRECTIONS.includes(a.name)) return a.name;
    }
  }
  return 'sendrecv';
}

const sends = (dir) => dir === 'sendrecv' || dir === 'sendonly';
const receives = (dir) => dir === 'sendrecv' || dir === 'recvonly';
function directionOf(send, recv) {
  if (send && recv) return 'sendrecv';
  if (send) return 'sendonly';
  if (recv) return 'recvonly';
  return 'inactive';
}

/**
 * The text formats of a section: the t140 payload type (the first in m=
 * order) and, when present and carrying t140, the red one with how many
 * generations its fmtp lists. Null without t140.
 */
function textFormats(m, lines) {
  const pts = payloadMap(lines);
  const t140 = m.formats.find((pt) => pts.get(pt)?.encoding === 't140');
  if (t140 === undefined) return null;
  let red;
  let generations = 3; // RFC 4103 5.1: primary plus two redundant.
  for (const pt of m.formats) {
    const p = pts.get(pt);
    if (p?.encoding !== 'red') continue;
    // RED that protects something other than our t140 is not ours.
    const listed = p.fmtp ? p.fmtp.split('/').map((s) => s.trim()) : [];
    if (listed.length && listed.some((x) => x !== t140)) continue;
    red = pt;
    if (listed.length >= 1 && listed.length <= 10) generations = listed.length;
    break;
  }
  return { t140, red, generations, t140Fmtp: pts.get(t140).fmtp };
}

/**
 * Attributes that describe one end's transport (its own addresses, ICE
 * candidates) and so must not be passed on from one leg to the other;
 * payload mappings and direction are written afresh.
 */
const NOT_PASSED = new Set([
  'rtpmap', 'fmtp', 'rtcp', 'candidate', 'remote-candidates', 'ice-ufrag', 'ice-pwd',
  'ice-options', 'ice-lite', 'end-of-candidates', ...DIRECTIONS,
]);

/**
 * Builds a section in RFC 8866 order (m, i, c, b, k, a). `from` lends its
 * other lines (b=, a=crypto, a=mid ...), rtcp-fb only for the formats kept.
 */
function buildSection({ m, port, formats, address, dir, from }) {
  const order = m.formats.filter((pt) => pt === formats.t140 || pt === formats.red);
  const kept = new Set(order);
  const info = [];
  const other = [];
  const attrs = [];
  for (const line of from) {
    if (line.type === 'm' || line.type === 'c') continue;
    if (line.type === 'i') info.push(line);
    else if (line.type !== 'a') other.push(line);
    else {
      const a = attribute(line);
      if (NOT_PASSED.has(a.name)) continue;
      if (a.name === 'rtcp-fb') {
        const pt = a.value.split(' ')[0];
        if (pt !== '*' && !kept.has(pt)) continue;
      }
      attrs.push(line);
    }
  }
  const out = [`m=${m.media} ${port} ${m.proto} ${order.join(' ')}`];
  for (const l of info) out.push(`i=${l.value}`);
  out.push(`c=IN ${net.isIPv6(address) ? 'IP6' : 'IP4'} ${address}`);
  for (const l of other) out.push(`${l.type}=${l.value}`);
  for (const pt of order) {
    if (pt === formats.red) {
      out.push(`a=rtpmap:${pt} red/1000`);
      out.push(`a=fmtp:${pt} ${Array(formats.generations).fill(formats.t140).join('/')}`);
    } else {
      out.push(`a=rtpmap:${pt} t140/1000`);
      // cps (RFC 4103 6): the receiver's limit, passed on as it is.
      if (formats.t140Fmtp) out.push(`a=fmtp:${pt} ${formats.t140Fmtp}`);
    }
  }
  for (const l of attrs) out.push(`a=${l.value}`);
  out.push(`a=${dir}`);
  return out.join('\r\n');
}

/** RFC 3264 6: a refused stream is answered with port 0. */
function declined(m, media) {
  if (!m) return `m=${media || 'text'} 0 RTP/AVP 0`;
  return `m=${m.media} 0 ${m.proto} ${m.formats[0]}`;
}

// ---------------------------------------------------------------------------
// The service.

function negotiate(req) {
  const offered = req.offered;
  const decline = (reason) => {
    log(NAME, `negotiate ${req.session} #${offered?.index ?? '?'}: decline (${reason})`);
    return { decline: { reason } };
  };
  if (!offered || !offered.section) return decline('no stream offered');
  const lines = sdpLines(offered.section);
  const m = parseMLine(lines);
  if (!m) return decline('no valid m= line');
  if (m.media !== 'text') return decline(`${m.media} is not a text stream`);
  if (m.port === 0) return decline('stream disabled by the offerer (port 0)');
  if (!/(^|\/)RTP\//.test(m.proto)) return decline(`${m.proto} is not an RTP profile`);
  const text = textFormats(m, lines);
  if (!text) return decline(`no t140 payload type among ${m.formats.join(' ')}`);

  const port = portFor(req.session, offered.index);
  // Relaying, the handler sends on what the offerer sends and receives
  // what it would receive: the other leg gets the same direction.
  const dir = direction(lines, sdpLines(offered.session_lines));
  const claim = buildSection({ m, port, formats: text, address: cfg.address, dir, from: lines });
  log(NAME, `negotiate ${req.session} #${offered.index}: claim t140 ${text.t140}${text.red ? ` red ${text.red}` : ''} on ${cfg.address}:${port} ${dir}`);
  return { claim };
}

function apply(req) {
  const offeredLines = sdpLines(req.offered?.section);
  const m = parseMLine(offeredLines);
  const index = req.offered?.index ?? '?';
  const refuse = (why) => {
    log(NAME, `apply ${req.session} #${index}: declined (${why})`);
    return { section: declined(m, req.offered?.media) };
  };
  if (!m) return refuse('no offered stream');
  const text = textFormats(m, offeredLines);
  if (!text) return refuse('the offer has no t140');

  const answeredLines = sdpLines(req.answered?.section);
  const am = parseMLine(answeredLines);
  if (!am || am.port === 0) return refuse('the other leg refused the stream');
  // The other leg may renumber payload types (RFC 3264 6.1 says SHOULD
  // keep them, not MUST): match by encoding name, by number when it sent
  // no rtpmap for a format. The offerer gets its own numbers back.
  const answeredPts = payloadMap(answeredLines);
  const has = (encoding, offeredPt) =>
    am.formats.some((pt) => {
      const p = answeredPts.get(pt);
      return p?.encoding ? p.encoding === encoding : pt === offeredPt;
    });
  if (!has('t140', text.t140)) return refuse('the other leg did not take t140');
  const answeredT140 = am.formats.find((pt) => answeredPts.get(pt)?.encoding === 't140');
  const formats = {
    ...text,
    red: text.red !== undefined && has('red', text.red) ? text.red : undefined,
    // The other leg's cps limits what the offerer may send us.
    t140Fmtp: answeredT140 !== undefined ? answeredPts.get(answeredT140).fmtp : '',
  };

  // Where this handler said it would be: the claim it made (so no state is
  // needed here); the port table only if the claim is missing.
  const forwardedLines = sdpLines(req.forwarded?.section);
  const fm = parseMLine(forwardedLines);
  const conn = forwardedLines.find((l) => l.type === 'c');
  const connAddr = conn ? conn.value.trim().split(/ +/)[2] : '';
  const port = fm && fm.port ? fm.port : portFor(req.session, req.offered.index);
  const address = connAddr && net.isIP(connAddr) ? connAddr : cfg.address;

  // RFC 3264 6.1 towards the offerer (sendonly -> recvonly, ...), narrowed
  // by what the other leg agreed to: we can only send the offerer what the
  // other leg sends us, and only take what the other leg will receive.
  const offeredDir = direction(offeredLines, sdpLines(req.offered.session_lines));
  const answeredDir = direction(answeredLines, sdpLines(req.answered.session_lines));
  const dir = directionOf(
    receives(offeredDir) && sends(answeredDir),
    sends(offeredDir) && receives(answeredDir),
  );

  const section = buildSection({
    m,
    port,
    formats,
    address,
    dir,
    from: answeredLines,
  });
  log(NAME, `apply ${req.session} #${index}: answer t140 ${text.t140}${formats.red ? ` red ${formats.red}` : ''} on ${address}:${port} ${dir} (offered ${offeredDir}, other leg ${answeredDir})`);
  return { section };
}

function ended(req) {
  const index = req.stream?.index ?? 0;
  const key = `${req.session}#${index}`;
  const port = streamPorts.get(key);
  streamPorts.delete(key);
  log(NAME, `ended ${req.session} #${index}${port ? `: port ${port} released` : ''}`);
  return {};
}

const sdp = loadProto('sipbus/sdp/v1/sdp.proto').sipbus.sdp.v1;

serve({
  point: 'SDP_HANDLER',
  defaultName: 't140',
  filters: ['text'],
  types: [],
  service: sdp.SdpHandler.service,
  implementation: {
    Negotiate: unary(NAME, 'Negotiate', negotiate),
    Apply: unary(NAME, 'Apply', apply),
    Ended: unary(NAME, 'Ended', ended),
  },
});
