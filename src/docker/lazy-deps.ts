/**
 * dockerode loads two heavy dependencies as soon as it is required, though
 * Lifeboat never uses them: ssh2 (for ssh:// engines, which Lifeboat does
 * not accept; its crypto allocates a 16 MB WebAssembly memory) and, through
 * lib/session.js, @grpc/grpc-js with protobufjs (BuildKit sessions for image
 * builds). Together they cost the agent about 20 MB of resident memory. These
 * module hooks hand dockerode stand-ins that load the real module on first
 * use instead. Imported first by the CLI's entry point, so the hooks are in
 * place before dockerode is evaluated; on a Node without module.registerHooks
 * (before 22.15) nothing changes.
 */
import module from 'node:module';
import { fileURLToPath } from 'node:url';

const SCHEME = 'lifeboat-lazy:';

/** Which requires are deferred: the specifier, and a fragment of the requiring module's URL. */
const LAZY: readonly { readonly specifier: string; readonly from: string; readonly source: (real: string) => string }[] = [
  {
    specifier: 'ssh2',
    from: '/node_modules/docker-modem/lib/',
    // docker-modem reads `.Client` when loaded and constructs one only for ssh:// connections
    source: (real) => `${loader(real)}\nmodule.exports = { Client: class Client { constructor(...args) { return new (real().Client)(...args); } } };`,
  },
  {
    specifier: './session',
    from: '/node_modules/dockerode/lib/',
    source: (real) => `${loader(real)}\nmodule.exports = function withSession(...args) { return real()(...args); };`,
  },
];

function loader(real: string): string {
  return `let loaded;\nconst real = () => (loaded ??= process.getBuiltinModule('node:module').createRequire(${JSON.stringify(real)})(${JSON.stringify(real)}));`;
}

const registerHooks = (module as { registerHooks?: typeof module.registerHooks }).registerHooks;
if (typeof registerHooks === 'function') {
  registerHooks({
    resolve(specifier, context, next) {
      const entry = LAZY.find((l) => l.specifier === specifier && (context.parentURL ?? '').includes(l.from));
      if (!entry) return next(specifier, context);
      const real = next(specifier, context);
      return { url: `${SCHEME}${LAZY.indexOf(entry)}:${real.url}`, format: 'commonjs', shortCircuit: true };
    },
    load(url, context, next) {
      if (!url.startsWith(SCHEME)) return next(url, context);
      const rest = url.slice(SCHEME.length);
      const index = Number(rest.slice(0, rest.indexOf(':')));
      const real = fileURLToPath(rest.slice(rest.indexOf(':') + 1));
      return { format: 'commonjs', source: LAZY[index]!.source(real), shortCircuit: true };
    },
  });
}
