// The public API (gradzip's qsgd/decompress/decompressAdd) with device arrays: compress(DeviceArray) gives a device
// packet; decompress / decompressAdd accept that device packet (and a host packet with a device destination), and
// the results equal the CPU decode bit for bit. Plain node:test; skips with the reason without a GPU.
import test from 'node:test';
import assert from 'node:assert/strict';
import { gz, cuda, skip, gaussian, assertSameBytes, bits } from './helpers.mjs';

test('public API: decompress / decompressAdd of device packets and device destinations', { skip }, async () => {
  const n = 100003;
  const x = gaussian(n, 5);
  for (const c of [gz.qsgd({ levels: 4 }), gz.qsgd({ coding: 'gamma' }), gz.topk({ ratio: 0.01 })]) {
    const hostPacket = c.compress(x, { seed: 9 });
    const want = gz.decompress(hostPacket);
    const dx = cuda.DeviceArray.from(x);
    const devPacket = c.compress(dx, { seed: 9 });              // device in, device packet out
    assert.ok(devPacket instanceof cuda.DeviceArray);
    assertSameBytes(assert, devPacket.download(), hostPacket, `${c.name} device packet = host packet`);
    const d1 = gz.decompress(devPacket);                          // device packet -> new device array
    assertSameBytes(assert, bits(d1.download()), bits(want), `${c.name} decompress(device packet)`);
    const d2 = cuda.DeviceArray.alloc(n, 'f32');
    gz.decompress(hostPacket, d2);                                // host packet -> device destination
    assertSameBytes(assert, bits(d2.download()), bits(want), `${c.name} decompress(host packet, device out)`);
    const accHost = gaussian(n, 6);
    const acc = cuda.DeviceArray.from(accHost);
    await gz.decompressAddAsync(devPacket, acc, 0.5);
    gz.decompressAdd(hostPacket, accHost, 0.5);
    assertSameBytes(assert, bits(acc.download()), bits(accHost), `${c.name} decompressAddAsync(device packet)`);
    for (const a of [dx, devPacket, d1, d2, acc]) a.free();
  }
});
