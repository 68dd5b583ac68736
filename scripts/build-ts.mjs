// Compiles lib/ (TypeScript) to dist/cjs (CommonJS + .d.ts) and writes the ESM entry dist/esm/index.mjs,
// a thin wrapper over the CommonJS build, so that `import` and `require` share one module instance
// (one GradzipError class, one native binding: no dual-package hazard).
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
execFileSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.json')], { stdio: 'inherit' });
mkdirSync(path.join(root, 'dist', 'esm'), { recursive: true });
// Export names come from the compiled module's own exports; no native binding is needed to list them
// because index.js loads the binding lazily.
const require = createRequire(import.meta.url);
const names = Object.keys(require(path.join(root, 'dist', 'cjs', 'index.js'))).filter((n) => n !== 'default' && n !== '__esModule');
const esm = `import cjs from '../cjs/index.js';\nexport const { ${names.join(', ')} } = cjs;\nexport default cjs;\n`;
writeFileSync(path.join(root, 'dist', 'esm', 'index.mjs'), esm);
writeFileSync(path.join(root, 'dist', 'esm', 'index.d.mts'), `export * from '../cjs/index.js';\nimport * as all from '../cjs/index.js';\nexport default all;\n`);
