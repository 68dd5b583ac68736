// Small helpers shared by the collectives: coded errors, seed derivation, chunking.
import { GradzipError, type GradzipErrorCode } from '../errors';

export type CommErrorCode =
  | 'ERR_GRADZIP_INVALID_ARG'
  | 'ERR_GRADZIP_PEER_LOST'
  | 'ERR_GRADZIP_TIMEOUT'
  | 'ERR_GRADZIP_CORRUPT'
  | 'ERR_GRADZIP_INTERNAL';

/** A GradzipError with the given code (the class and codes of lib/errors.ts). */
export function commError(code: CommErrorCode | string, message: string, cause?: unknown): Error {
  return new GradzipError(code as GradzipErrorCode, message, cause !== undefined ? { cause } : undefined);
}

const M64 = (1n << 64n) - 1n;
function splitmix64(z: bigint): bigint {
  z = (z + 0x9e3779b97f4a7c15n) & M64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M64;
  return z ^ (z >> 31n);
}

/** The seed a rank uses for one compression inside a collective:
 *  derived = splitmix64(splitmix64(splitmix64(seed) ^ rank) ^ step), all arithmetic mod 2^64, where `step`
 *  is the compression's index inside the operation (ring: hop 0 .. P-2 of the reduce-scatter, P-1 for the
 *  final all-gather packet; allgather and gossip: 0). Deterministic, distinct per rank and hop. */
export function deriveSeed(seed: bigint | number, rank: number, step: number): bigint {
  const s = typeof seed === 'bigint' ? seed & M64 : BigInt.asUintN(64, BigInt(Math.trunc(seed)));
  return splitmix64(splitmix64(splitmix64(s) ^ BigInt(rank)) ^ BigInt(step));
}

/** A fresh random 64-bit seed (used when an operation gets no seed). */
export function freshSeed(): bigint {
  const a = Math.floor(Math.random() * 0x100000000), b = Math.floor(Math.random() * 0x100000000);
  return (BigInt(a) << 32n) | BigInt(b);
}

/** Chunk boundaries [off[k], off[k+1]) of n elements cut into P nearly equal parts. */
export function chunkOffsets(n: number, P: number): number[] {
  const off: number[] = [];
  for (let k = 0; k <= P; k++) off.push(Math.floor((k * n) / P));
  return off;
}

export function isFloat32Array(x: unknown): x is Float32Array {
  return x instanceof Float32Array || Object.prototype.toString.call(x) === '[object Float32Array]';
}

export function checkTimeout(ms: unknown, what: string): number {
  if (ms === undefined) return 0;
  if (typeof ms !== 'number' || !(ms >= 0) || !Number.isFinite(ms)) {
    throw commError('ERR_GRADZIP_INVALID_ARG', `${what}: timeoutMs must be a finite number >= 0 (0 = no timeout)`);
  }
  return ms;
}
