// GradzipError: the one error class of the package. `code` is a stable string; messages may change.
export type GradzipErrorCode =
  | 'ERR_GRADZIP_INVALID_ARG'
  | 'ERR_GRADZIP_NONFINITE'
  | 'ERR_GRADZIP_CORRUPT'
  | 'ERR_GRADZIP_CUDA'
  | 'ERR_GRADZIP_PEER_LOST'
  | 'ERR_GRADZIP_TIMEOUT'
  | 'ERR_GRADZIP_NO_BINDING'
  | 'ERR_GRADZIP_INTERNAL';

export class GradzipError extends Error {
  readonly code: GradzipErrorCode;
  constructor(code: GradzipErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    Object.defineProperty(this, 'name', { value: 'GradzipError', enumerable: false, configurable: true, writable: true });
  }
}

/** Throws ERR_GRADZIP_INVALID_ARG. */
export function invalid(message: string): never {
  throw new GradzipError('ERR_GRADZIP_INVALID_ARG', message);
}

/**
 * Turns an error thrown by the native addon (a plain Error with `code`) into a GradzipError created here,
 * so its stack is the caller's JS stack. Anything else is rethrown unchanged.
 */
export function rethrow(e: unknown): never {
  throw convert(e);
}

export function convert(e: unknown): unknown {
  if (e instanceof GradzipError) return e;
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('ERR_GRADZIP_')) {
      return new GradzipError(code as GradzipErrorCode, e.message);
    }
  }
  return e;
}
