// Prints the CPU sources for binding.gyp (one home per concern: every .cc under native/core, native/codecs, native/napi).
const fs = require('fs'), path = require('path');
const root = path.join(__dirname, '..');
const dirs = ['native/core', 'native/codecs', 'native/napi'];
const out = [];
for (const d of dirs) {
  const abs = path.join(root, d);
  if (!fs.existsSync(abs)) continue;
  for (const f of fs.readdirSync(abs).sort()) if (f.endsWith('.cc')) out.push(`${d}/${f}`);
}
console.log(out.join(' '));
