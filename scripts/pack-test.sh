#!/usr/bin/env bash
# Packaging check (CI): prebuildify the addon into prebuilds/linux-x64/, `npm pack`, install the tarball into a
# fresh folder with install scripts off (`npm install --ignore-scripts`: what npm 11 does for an unapproved
# dependency) and no compiler on PATH, then from there: a CJS and an ESM round trip, a check that the addon came
# from prebuilds/ (nothing was compiled), the loader's error when the prebuild is missing, and a TypeScript
# consumer type-checked for both module kinds.
# Usage: bash scripts/pack-test.sh   (env KEEP=1 keeps the temp folder)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
if [ -z "${npm_config_nodedir:-}" ]; then
  prefix="$(cd "$(dirname "$(command -v node)")/.." && pwd)"
  if [ -f "$prefix/include/node/node_api.h" ] && [ -f "$prefix/include/node/common.gypi" ]; then export npm_config_nodedir="$prefix"; fi
fi
export npm_config_jobs="${npm_config_jobs:-2}"

echo "== prebuild (prebuildify --napi --strip)"
# prebuildify rebuilds build/ too: hold the build lock so a concurrent scripts/build-native.sh never interleaves.
flock /tmp/gradzip-build.lock npm run --silent prebuild
ls -l prebuilds/linux-x64/
[ -f dist/cjs/index.js ] || node scripts/build-ts.mjs

work="$(mktemp -d /tmp/gradzip-pack.XXXXXX)"
if [ -z "${KEEP:-}" ]; then trap 'rm -rf "$work"' EXIT; fi
echo "== npm pack -> $work"
tgz="$(npm pack --silent --pack-destination "$work" | tail -n1)"
tar -tzf "$work/$tgz" > "$work/contents.txt"
grep -q '^package/prebuilds/linux-x64/.*\.node$' "$work/contents.txt" || { echo "pack-test: no prebuild in the tarball"; exit 1; }
grep -q '^package/dist/esm/index.mjs$' "$work/contents.txt" || { echo "pack-test: no ESM entry in the tarball"; exit 1; }
grep -q '^package/scripts/gyp-sources.js$' "$work/contents.txt" || { echo "pack-test: binding.gyp helper missing"; exit 1; }
if grep -qE '^package/(test|node_modules|build)/' "$work/contents.txt"; then echo "pack-test: tarball holds test/, node_modules/ or build/"; exit 1; fi
echo "tarball: $tgz, $(wc -l < "$work/contents.txt") files, $(du -k "$work/$tgz" | cut -f1) KiB"

# A PATH with node and npm only: no gcc, g++, make, python3 or node-gyp to fall back on.
mkdir -p "$work/bin" "$work/app"
ln -s "$(command -v node)" "$work/bin/node"
ln -s "$(command -v npm)" "$work/bin/npm"
cd "$work/app"
cat > package.json <<'JSON'
{ "name": "gradzip-pack-test", "version": "1.0.0", "private": true }
JSON
echo "== npm install --ignore-scripts (PATH=node+npm only)"
env PATH="$work/bin" npm install --ignore-scripts --no-audit --no-fund --loglevel=error "$work/$tgz"
[ ! -e node_modules/gradzip/build ] || { echo "pack-test: something was built"; exit 1; }

cat > t.cjs <<'JS'
const g = require('gradzip');
const x = Float32Array.from({ length: 10007 }, (_, i) => Math.sin(i) * (i % 7));
for (const c of [g.qsgd(), g.qsgd({ coding: 'gamma' }), g.terngrad(), g.onebit(), g.topk(), g.randomk(), g.nonuniform()]) {
  const p = c.compress(x, { seed: 3 });
  const y = g.decompress(p);
  const i = g.inspect(p);
  if (y.length !== x.length || i.n !== x.length || typeof i.seed !== 'bigint') throw new Error('round trip failed: ' + c.name);
  const acc = new Float32Array(x.length);
  g.decompressAdd(p, acc, 1);
  if (!acc.every((v, k) => v === y[k])) throw new Error('decompressAdd failed: ' + c.name);
}
const mods = Object.keys(require.cache).filter((k) => k.endsWith('.node'));
if (mods.length !== 1 || !mods[0].includes('/prebuilds/linux-x64/')) throw new Error('addon not from prebuilds: ' + mods);
try { g.decompress(new Uint8Array(3)); throw new Error('no error'); } catch (e) {
  if (!(e instanceof g.GradzipError) || e.code !== 'ERR_GRADZIP_CORRUPT') throw e;
}
console.log('CJS ok:', g.info().version, mods[0].replace(/.*node_modules\//, ''));
JS
cat > t.mjs <<'JS'
import { qsgd, topk, errorFeedback, decompress, decompressAdd, inspect, info, GradzipError } from 'gradzip';
import gz from 'gradzip';
const x = new Float32Array(4097).map((_, i) => Math.cos(i));
const p = await qsgd({ levels: 4, bucketSize: 512, norm: 'l2', coding: 'gamma' }).compressAsync(x, { seed: 7 });
const y = decompress(p);
if (y.length !== 4097 || inspect(p).seed !== 7n || gz.qsgd !== qsgd) throw new Error('ESM round trip failed');
const ef = errorFeedback(topk({ ratio: 0.1 }));
decompressAdd(ef.compress(x), new Float32Array(4097), 0.5);
if (!(GradzipError.prototype instanceof Error)) throw new Error('GradzipError');
console.log('ESM ok:', info().cpu.simd);
JS
cat > t.ts <<'TS'
import { qsgd, decompress, inspect, GradzipError, type Compressor, type PacketInfo } from 'gradzip';
const c: Compressor = qsgd({ levels: 4, coding: 'gamma' });
const p: Uint8Array = c.compress(new Float32Array(8), { seed: 1n });
const y: Float32Array = decompress(p);
const i: PacketInfo = inspect(p);
const s: bigint = i.seed;
const e: GradzipError | undefined = undefined;
export { y, s, e };
TS
cat > t.mts <<'TS'
import { topk, decompressAdd, info, type Info } from 'gradzip';
const acc = new Float32Array(16);
decompressAdd(topk({ k: 2, values: 'f16' }).compress(new Float32Array(16)), acc, 0.5);
const v: Info = info();
export const version: string = v.version;
TS
echo "== CJS round trip (PATH=node only)"
env PATH="$work/bin" node t.cjs
echo "== ESM round trip"
env PATH="$work/bin" node t.mjs
echo "== TypeScript consumer, CommonJS and ESM (module node16)"
node "$root/node_modules/typescript/bin/tsc" --noEmit --strict --target es2022 --module node16 --moduleResolution node16 \
  --typeRoots "$root/node_modules/@types" --types node t.ts t.mts
echo "types ok"
echo "== without a prebuild the loader says what to do"
mv node_modules/gradzip/prebuilds node_modules/gradzip/prebuilds.off
msg="$(env PATH="$work/bin" node -e "try { require('gradzip').qsgd().compress(new Float32Array(1)) } catch (e) { console.log(e.code + ' ' + e.message) }")"
mv node_modules/gradzip/prebuilds.off node_modules/gradzip/prebuilds
echo "$msg" | head -n 3
echo "$msg" | grep -q 'ERR_GRADZIP_NO_BINDING' && echo "$msg" | grep -q 'npm install-scripts approve gradzip' \
  && echo "$msg" | grep -q 'npm rebuild gradzip' || { echo "pack-test: loader error lacks the instructions"; exit 1; }
echo "pack-test: OK"
