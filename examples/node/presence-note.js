'use strict';
// A publication handler for the `presence` event package: it lets only
// PIDF documents (RFC 3863) in, remembers the note each resource shows
// (and logs it), and composes a resource's state as its newest
// publication.
//
// Contract: proto/sipbus/publish/v1/publication.proto (service
// PublicationHandler). publish-svc has already checked the body type
// (application/pidf+xml) before it calls; what is checked here is that the
// body is a PIDF document.

const { loadProto, unary, serve, log } = require('./registry');

const NAME = process.env.NAME || 'presence-note';
const PIDF_NS = 'urn:ietf:params:xml:ns:pidf';
const XML_NS = 'http://www.w3.org/XML/1998/namespace';

// ---------------------------------------------------------------------------
// A small, strict XML reader: enough to tell a well-formed document with
// namespaces apart from anything else, without a library. It checks that
// tags nest and close, that attributes are quoted and unique, that every
// prefix is bound and every entity is one XML predefines (a DOCTYPE with
// its own declarations is refused: its entities could not be expanded).

class NotXml extends Error {}

const NAME_RE = /[A-Za-z_\u00C0-\uFFFF][-A-Za-z0-9_.:\u00B7\u00C0-\uFFFF]*/y;
const SPACE_RE = /[ \t\n]*/y;
const PREDEFINED = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

function decodeEntities(s) {
  if (!s.includes('&')) return s;
  return s.replace(/&([^;&<]*);|&/g, (whole, ref) => {
    if (ref === undefined) throw new NotXml('a bare & (not an entity reference)');
    if (Object.hasOwn(PREDEFINED, ref)) return PREDEFINED[ref];
    const num = /^#(?:x([0-9A-Fa-f]+)|([0-9]+))$/.exec(ref);
    if (num) {
      const cp = num[1] !== undefined ? parseInt(num[1], 16) : parseInt(num[2], 10);
      if (cp < 1 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) throw new NotXml(`bad character reference ${whole}`);
      return String.fromCodePoint(cp);
    }
    throw new NotXml(`unknown entity ${whole}`);
  });
}

/**
 * Reads `text` as XML. Returns the root element's { ns, local } and, for
 * every element for which `wanted(ns, local)` holds, its text content in
 * document order. Throws NotXml when the document is not well formed.
 */
function readXml(text, wanted) {
  const s = text.replace(/\r\n?/g, '\n');
  let i = 0;
  const stack = []; // { qname, ns: prefix -> uri (inheriting its parent's) }
  let root = null;
  let rootClosed = false;
  const found = [];
  let capture = null; // { depth, parts }: inside a wanted element

  const expect = (str) => {
    if (!s.startsWith(str, i)) throw new NotXml(`expected "${str}" at ${i}`);
    i += str.length;
  };
  const skipSpace = () => {
    SPACE_RE.lastIndex = i;
    SPACE_RE.exec(s);
    const moved = SPACE_RE.lastIndex > i;
    i = SPACE_RE.lastIndex;
    return moved;
  };
  const name = () => {
    NAME_RE.lastIndex = i;
    const m = NAME_RE.exec(s);
    if (!m) throw new NotXml(`expected a name at ${i}`);
    i = NAME_RE.lastIndex;
    return m[0];
  };
  const until = (str, what) => {
    const end = s.indexOf(str, i);
    if (end < 0) throw new NotXml(`unterminated ${what}`);
    const body = s.slice(i, end);
    i = end + str.length;
    return body;
  };
  const resolve = (qname, scope, isAttribute) => {
    const c = qname.indexOf(':');
    if (c < 0) return { ns: isAttribute ? '' : scope[''] || '', local: qname };
    const prefix = qname.slice(0, c);
    const local = qname.slice(c + 1);
    if (!local || local.includes(':')) throw new NotXml(`bad name ${qname}`);
    if (prefix === 'xml') return { ns: XML_NS, local };
    const ns = scope[prefix];
    if (!ns) throw new NotXml(`unbound prefix ${prefix}`);
    return { ns, local };
  };

  // The XML declaration may only open the document.
  if (s.startsWith('<?xml') && /[\s?]/.test(s[5] || '')) until('?>', 'XML declaration');

  while (i < s.length) {
    if (s[i] !== '<') {
      const end = s.indexOf('<', i);
      const run = s.slice(i, end < 0 ? s.length : end);
      i = end < 0 ? s.length : end;
      if (!stack.length) {
        if (run.trim()) throw new NotXml('text outside the root element');
        continue;
      }
      const decoded = decodeEntities(run);
      if (capture) capture.parts.push(decoded);
      continue;
    }
    if (s.startsWith('<!--', i)) {
      i += 4;
      until('-->', 'comment');
    } else if (s.startsWith('<![CDATA[', i)) {
      if (!stack.length) throw new NotXml('CDATA outside the root element');
      i += 9;
      const data = until(']]>', 'CDATA section');
      if (capture) capture.parts.push(data);
    } else if (s.startsWith('<!DOCTYPE', i)) {
      if (root) throw new NotXml('DOCTYPE after the root element');
      i += 9;
      const decl = until('>', 'DOCTYPE');
      if (decl.includes('[')) throw new NotXml('DOCTYPE with an internal subset');
    } else if (s.startsWith('<?', i)) {
      i += 2;
      if (name().toLowerCase() === 'xml') throw new NotXml('XML declaration not at the start');
      until('?>', 'processing instruction');
    } else if (s.startsWith('</', i)) {
      i += 2;
      const qname = name();
      skipSpace();
      expect('>');
      const open = stack.pop();
      if (!open || open.qname !== qname) throw new NotXml(`</${qname}> does not close ${open ? `<${open.qname}>` : 'anything'}`);
      if (capture && capture.depth === stack.length) {
        found.push(capture.parts.join(''));
        capture = null;
      }
      if (!stack.length) rootClosed = true;
    } else {
      i += 1;
      if (rootClosed) throw new NotXml('a second root element');
      const qname = name();
      const attrs = [];
      let selfClosing = false;
      for (;;) {
        const spaced = skipSpace();
        if (s.startsWith('/>', i)) {
          i += 2;
          selfClosing = true;
          break;
        }
        if (s[i] === '>') {
          i += 1;
          break;
        }
        if (!spaced) throw new NotXml(`malformed tag <${qname}> at ${i}`);
        const attr = name();
        skipSpace();
        expect('=');
        skipSpace();
        const quote = s[i];
        if (quote !== '"' && quote !== "'") throw new NotXml(`unquoted attribute ${attr}`);
        i += 1;
        const raw = until(quote, `attribute ${attr}`);
        if (raw.includes('<')) throw new NotXml(`< in attribute ${attr}`);
        if (attrs.some((a) => a.name === attr)) throw new NotXml(`attribute ${attr} twice`);
        attrs.push({ name: attr, value: decodeEntities(raw) });
      }
      const parent = stack.length ? stack[stack.length - 1].ns : { xml: XML_NS };
      const scope = Object.create(parent);
      for (const a of attrs) {
        if (a.name === 'xmlns') scope[''] = a.value;
        else if (a.name.startsWith('xmlns:')) {
          if (!a.value) throw new NotXml(`empty namespace for ${a.name}`);
          scope[a.name.slice(6)] = a.value;
        }
      }
      for (const a of attrs) {
        if (a.name !== 'xmlns' && !a.name.startsWith('xmlns:')) resolve(a.name, scope, true);
      }
      const el = resolve(qname, scope, false);
      if (!root) root = el;
      const want = !capture && wanted(el.ns, el.local);
      if (selfClosing) {
        if (want) found.push('');
        if (!stack.length) rootClosed = true;
      } else {
        if (want) capture = { depth: stack.length, parts: [] };
        stack.push({ qname, ns: scope });
      }
    }
  }
  if (!root) throw new NotXml('no root element');
  if (!rootClosed) throw new NotXml(`<${stack[stack.length - 1].qname}> is not closed`);
  return { root, found };
}

// Notes are PIDF's own (<note> of presence and tuple) and those of the
// PIDF extensions (data model: person and device; RPID).
const isNote = (ns, local) => local === 'note' && (ns === PIDF_NS || ns.startsWith(`${PIDF_NS}:`));

/**
 * { pidf: true, note } for a PIDF document (note: its first note, trimmed,
 * or ''), { pidf: false, why } for anything else.
 */
function readPidf(body) {
  const text = Buffer.isBuffer(body) ? body.toString('utf8') : String(body || '');
  try {
    const { root, found } = readXml(text.replace(/^\uFEFF/, ''), isNote);
    if (root.local !== 'presence' || root.ns !== PIDF_NS) {
      return { pidf: false, why: `root element is {${root.ns}}${root.local}` };
    }
    return { pidf: true, note: (found[0] || '').trim() };
  } catch (err) {
    if (err instanceof NotXml) return { pidf: false, why: err.message };
    throw err;
  }
}

// ---------------------------------------------------------------------------
// Notes by resource: the note of the publication that last brought one,
// with its entity tag to know when that publication goes away. Kept from
// StateChanged, which publish-svc calls once a change is stored (a body
// seen by NewPublication may still be refused afterwards, e.g. 412).

const notes = new Map(); // resource -> { etag, body, note }

function newPublication(req) {
  const p = req.publication || {};
  const doc = readPidf(p.body);
  if (!doc.pidf) {
    log(NAME, `refused ${p.resource || '?'} from ${p.publisher || 'anonymous'}: ${doc.why}`);
    return { reject: { status: 400, reason: 'Not PIDF' } };
  }
  log(NAME, `accepted PIDF for ${p.resource}${doc.note ? ` (note "${doc.note}")` : ''}`);
  // Empty: store the body as published.
  return { accept: Buffer.alloc(0) };
}

function stateChanged(req) {
  const p = req.publication || {};
  const resource = p.resource || '';
  const body = Buffer.isBuffer(p.body) ? p.body.toString('utf8') : '';
  const held = notes.get(resource);
  switch (req.change) {
    case 'CHANGE_INITIALIZED':
    case 'CHANGE_MODIFIED': {
      // The newest body speaks for the resource, note or not.
      const doc = readPidf(body);
      if (doc.pidf && doc.note) {
        notes.set(resource, { etag: p.etag, body, note: doc.note });
        log(NAME, `${resource} note: "${doc.note}"`);
      } else if (held) {
        notes.delete(resource);
        log(NAME, `${resource} note: none`);
      }
      break;
    }
    case 'CHANGE_REFRESHED':
      // A refresh gets a new entity tag and keeps its body: that is how
      // the publication holding the note is recognised again.
      if (held && held.body === body) held.etag = p.etag;
      break;
    case 'CHANGE_REMOVED':
    case 'CHANGE_EXPIRED':
      if (held && held.etag === p.etag) {
        notes.delete(resource);
        log(NAME, `${resource} note forgotten (${req.change === 'CHANGE_EXPIRED' ? 'expired' : 'removed'})`);
      }
      break;
    default:
      break;
  }
  return {};
}

function compose(req) {
  const pubs = req.publications || [];
  // Oldest first: the newest document wins whole.
  const newest = pubs[pubs.length - 1];
  if (!newest) return { content_type: '', body: Buffer.alloc(0) };
  return { content_type: newest.content_type, body: newest.body };
}

if (require.main === module) {
  const publish = loadProto('sipbus/publish/v1/publication.proto').sipbus.publish.v1;
  serve({
    point: 'PUBLICATION_HANDLER',
    defaultName: 'presence-note',
    filters: ['presence'],
    types: ['application/pidf+xml'],
    service: publish.PublicationHandler.service,
    implementation: {
      NewPublication: unary(NAME, 'NewPublication', newPublication),
      StateChanged: unary(NAME, 'StateChanged', stateChanged),
      Compose: unary(NAME, 'Compose', compose),
    },
  });
}

module.exports = { readPidf, readXml, NotXml };
