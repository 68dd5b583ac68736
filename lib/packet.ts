// inspect(packet): the header of a packet, fully validated (magic, sizes, chunk table, CRC) by the core.
import { binding, type RawHeader } from './binding';
import type { CodecName } from './codecs';
import { convert, invalid } from './errors';

export type PacketParams =
  | { levels: number; bucketSize: number; norm: 'l2' | 'linf'; coding: 'fixed' | 'gamma' | 'sparse' } // qsgd
  | { bucketSize: number } // terngrad, onebit
  | { k: number; values: 'f32' | 'f16' | 'bf16' } // topk
  | { k: number } // randomk
  | { levels: number; bucketSize: number; shape: number; scale: number; levelTable: number[] }; // nonuniform

export interface PacketInfo {
  codec: CodecName;
  /** Element count. */
  n: number;
  /** Packet length in bytes (header, parameters, chunk table, payload and CRC). */
  bytes: number;
  /** bytes * 8 / n (0 when n = 0). */
  bitsPerElement: number;
  /** The Philox key (0n for the deterministic codecs onebit and topk). */
  seed: bigint;
  params: PacketParams;
  /** Wire format version. */
  version: number;
  /** True when gradzip drew the seed (the caller gave none). */
  seedDrawn: boolean;
  payloadBytes: number;
  /** Independently decodable chunks (0 for the fixed layouts). */
  chunks: number;
}

export const CODEC_NAMES: readonly CodecName[] = ['qsgd', 'terngrad', 'onebit', 'topk', 'randomk', 'nonuniform'];
const VALUES = ['f32', 'f16', 'bf16'] as const;
const CODINGS = ['fixed', 'gamma', 'sparse'] as const;

export function codecName(id: number): CodecName {
  const name = CODEC_NAMES[id - 1];
  if (name === undefined) throw new Error(`gradzip: unknown codec id ${id}`);
  return name;
}

export function paramsOf(h: RawHeader): PacketParams {
  switch (h.codec) {
    case 1: return { levels: h.levels, bucketSize: h.bucket, norm: h.norm === 1 ? 'linf' : 'l2', coding: CODINGS[h.coding] ?? 'fixed' };
    case 2: case 3: return { bucketSize: h.bucket };
    case 4: return { k: h.k, values: VALUES[h.vt] ?? 'f32' };
    case 5: return { k: h.k };
    default: return {
      levels: h.levels, bucketSize: h.bucket, shape: h.shape ?? 0, scale: h.scale ?? 0,
      levelTable: Array.from(h.levelTable ?? []),
    };
  }
}

/** Validates a packet and returns its header fields. Throws ERR_GRADZIP_CORRUPT for a bad packet. */
export function inspect(packet: Uint8Array): PacketInfo {
  if (!(packet instanceof Uint8Array)) invalid('inspect: packet must be a Uint8Array');
  let h: RawHeader;
  try { h = binding().parse(packet); } catch (e) { throw convert(e); }
  const bytes = packet.byteLength;
  return {
    codec: codecName(h.codec),
    n: h.n,
    bytes,
    bitsPerElement: h.n === 0 ? 0 : (bytes * 8) / h.n,
    seed: h.seed,
    params: paramsOf(h),
    version: h.version,
    seedDrawn: (h.flags & 1) !== 0,
    payloadBytes: h.payloadBytes,
    chunks: h.chunkCount,
  };
}

/** @internal the raw header (all fields), for the CLI hexdump. */
export function parseRaw(packet: Uint8Array): RawHeader {
  try { return binding().parse(packet); } catch (e) { throw convert(e); }
}
