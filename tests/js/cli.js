'use strict';
// Command-line parsing shared by the test clients: `--name value` options
// and bare `--flag`s, nothing else; any mistake goes to `usage(message)`.

function parseOptions(argv, { valued, flags = [] }, usage) {
  const takesValue = new Set(valued);
  const isFlag = new Set(flags);
  const opts = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') usage();
    if (!arg.startsWith('--')) usage(`unexpected argument ${JSON.stringify(arg)}`);
    const name = arg.slice(2);
    if (isFlag.has(name)) {
      opts[name] = true;
    } else if (takesValue.has(name)) {
      if (i + 1 >= argv.length) usage(`--${name} needs a value`);
      opts[name] = argv[++i];
    } else {
      usage(`unknown option --${name}`);
    }
  }
  // A non-negative integer option, or `dflt` when absent.
  opts.int = (name, dflt) => {
    if (opts[name] === undefined) return dflt;
    const n = Number(opts[name]);
    if (!Number.isInteger(n) || n < 0) usage(`--${name} must be a non-negative integer`);
    return n;
  };
  return opts;
}

module.exports = { parseOptions };
