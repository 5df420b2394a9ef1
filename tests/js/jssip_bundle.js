// Builds a browser script of JsSIP from node_modules at run time.
//
// The jssip package on npm stopped shipping dist/jssip.min.js with 3.13
// (its files are lib/ only), so this file does what a bundler would, for
// exactly this input: CommonJS modules (jssip/lib, sdp-transform, events,
// debug, ms), each wrapped in a function, `require` resolved relative to
// the requiring file or through node_modules (a package.json "browser"
// string wins over "main", as bundlers do). The result defines
// window.JsSIP.
//
//   const { bundleJsSIP } = require('./jssip_bundle');
//   const source = bundleJsSIP(); // string of JavaScript
//
// `node jssip_bundle.js > jssip.js` prints it.
'use strict';

const fs = require('fs');
const path = require('path');

const REQUIRE_RE = /\brequire\(\s*(['"])([^'"]+)\1\s*\)/g;

function isFile(p) {
  try {
    return fs.statSync(p).isFile();
  } catch (error) {
    return false;
  }
}

function isDir(p) {
  try {
    return fs.statSync(p).isDirectory();
  } catch (error) {
    return false;
  }
}

function resolveFileOrDir(p) {
  for (const candidate of [p, `${p}.js`, `${p}.json`]) {
    if (isFile(candidate)) return candidate;
  }
  if (isDir(p)) {
    const pkgJson = path.join(p, 'package.json');
    if (isFile(pkgJson)) {
      const pkg = JSON.parse(fs.readFileSync(pkgJson, 'utf8'));
      const entry = typeof pkg.browser === 'string' ? pkg.browser : pkg.main;
      if (entry) {
        const resolved = resolveFileOrDir(path.resolve(p, entry));
        if (resolved) return resolved;
      }
    }
    const index = path.join(p, 'index.js');
    if (isFile(index)) return index;
  }
  return null;
}

function resolve(fromFile, spec) {
  if (spec.startsWith('./') || spec.startsWith('../') || spec.startsWith('/')) {
    return resolveFileOrDir(path.resolve(path.dirname(fromFile), spec));
  }
  let dir = path.dirname(fromFile);
  for (;;) {
    const candidate = path.join(dir, 'node_modules', spec);
    if (isDir(candidate) || isFile(candidate) || isFile(`${candidate}.js`)) {
      const resolved = resolveFileOrDir(candidate);
      if (resolved) return resolved;
    }
    const parent = path.dirname(dir);
    if (parent === dir) return null;
    dir = parent;
  }
}

function bundleJsSIP(baseDir = __dirname) {
  const entry = resolve(path.join(baseDir, 'index.js'), 'jssip');
  if (!entry) throw new Error(`jssip not found under ${baseDir}/node_modules (run npm install)`);
  const ids = new Map(); // absolute file -> numeric id
  const parts = [];
  const queue = [entry];
  ids.set(entry, 0);
  while (queue.length) {
    const file = queue.shift();
    const id = ids.get(file);
    const source = fs.readFileSync(file, 'utf8');
    const deps = {};
    if (file.endsWith('.json')) {
      parts.push(`${id}: [function (require, module, exports) {\nmodule.exports = ${source.trim()};\n}, {}]`);
      continue;
    }
    for (const match of source.matchAll(REQUIRE_RE)) {
      const spec = match[2];
      if (spec in deps) continue;
      // Node-only branches (e.g. debug's node.js) are never taken in a
      // browser; an unresolved name throws only if actually required.
      const resolved = resolve(file, spec);
      if (!resolved) {
        deps[spec] = null;
        continue;
      }
      if (!ids.has(resolved)) {
        ids.set(resolved, ids.size);
        queue.push(resolved);
      }
      deps[spec] = ids.get(resolved);
    }
    const label = path.relative(baseDir, file);
    parts.push(`${id}: [function (require, module, exports) {\n// ${label}\n${source}\n}, ${JSON.stringify(deps)}]`);
  }
  return `// JsSIP for the browser, bundled from node_modules by jssip_bundle.js
(function () {
  var defs = {
${parts.join(',\n')}
  };
  var cache = {};
  function load(id) {
    if (cache[id]) return cache[id].exports;
    var module = (cache[id] = { exports: {} });
    var def = defs[id];
    def[0].call(module.exports, function (spec) {
      var dep = def[1][spec];
      if (dep === undefined || dep === null) throw new Error('jssip_bundle: cannot require ' + spec);
      return load(dep);
    }, module, module.exports);
    return module.exports;
  }
  window.JsSIP = load(0);
})();
`;
}

module.exports = { bundleJsSIP };

if (require.main === module) {
  process.stdout.write(bundleJsSIP());
}
