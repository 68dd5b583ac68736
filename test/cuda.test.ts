// CUDA backend, checks that need no GPU (CI): the addon compiles and loads, info() reports it, and with no
// driver/device every device operation fails with ERR_GRADZIP_CUDA and a clear reason while the CPU API works.
// The GPU parity suite is test/gpu/ (plain `node --test test/gpu/`).
import { execSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const gz = require('../dist/cjs/index.js');
// eslint-disable-next-line @typescript-eslint/no-var-requires
const cuda = require('../dist/cjs/cuda.js');

const root = path.join(__dirname, '..');
const addon = path.join(root, 'build-cuda', 'Release', 'gradzip_cuda.node');
const hasNvcc = (() => { try { execSync('command -v nvcc', { stdio: 'ignore', shell: '/bin/bash' }); return true; } catch { return false; } })();
if (hasNvcc && !fs.existsSync(addon)) {
  // CI: build it (nvcc is installed; no GPU needed). Serialized by the build lock.
  execSync('bash scripts/build-cuda.sh', { cwd: root, stdio: 'inherit' });
}

describe('cuda backend without a GPU', () => {
  it('the CUDA sources compile and the addon loads (info().backends.cuda.compiled)', () => {
    const c = gz.info().backends.cuda;
    if (!hasNvcc && !fs.existsSync(addon)) {
      expect(c.compiled).toBe(false);
      expect(String(c.reason)).toMatch(/build-cuda|not found/);
      return;
    }
    expect(c.compiled).toBe(true);
    expect(typeof c.available).toBe('boolean');
    expect(Array.isArray(c.devices)).toBe(true);
  });

  it('with no usable device: a clear reason, ERR_GRADZIP_CUDA from device operations, CPU unaffected', () => {
    const c = cuda.cudaInfo();
    if (c.available) return;  // a GPU is present: test/gpu covers it
    expect(c.devices).toEqual([]);
    if (c.compiled) expect(String(c.reason)).toMatch(/cudaError|no CUDA device/);
    let err: any;
    try { cuda.DeviceArray.alloc(16); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(gz.GradzipError);
    expect(err.code).toBe('ERR_GRADZIP_CUDA');
    expect(String(err.message)).toMatch(/CUDA backend not available/);
    expect(String(err.message)).toMatch(/CPU backend/);
    // CPU path
    const q = gz.qsgd({ levels: 4 });
    const x = new Float32Array(1000).map((_, i) => Math.sin(i));
    expect(gz.decompress(q.compress(x, { seed: 1 })).length).toBe(1000);
  });

  it('isDeviceArray and argument checks', () => {
    expect(cuda.isDeviceArray(new Float32Array(4))).toBe(false);
    expect(cuda.isDeviceArray({})).toBe(false);
    expect(() => cuda.DeviceArray.alloc(-1)).toThrow(/length/);
    expect(() => cuda.DeviceArray.alloc(4, 'f64')).toThrow(/dtype/);
  });
});
