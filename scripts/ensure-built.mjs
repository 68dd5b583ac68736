// Used by `npm test` / `npm run bench`: builds the native addon when neither a prebuild nor build/ has one,
// then compiles the TypeScript. Idempotent and quick when everything is there.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const have = ['build/Release/gradzip.node', 'prebuilds/linux-x64/gradzip.node', 'prebuilds/linux-x64/node.napi.node']
  .some((p) => existsSync(path.join(root, p)));
if (!have || process.env.GRADZIP_REBUILD) {
  console.log('gradzip: building the native addon (node-gyp)…');
  execFileSync('bash', [path.join(root, 'scripts', 'build-native.sh')], { cwd: root, stdio: 'inherit' });
}
execFileSync(process.execPath, [path.join(root, 'scripts', 'build-ts.mjs')], { cwd: root, stdio: 'inherit' });
