import { errorCodeOf, type WireCodeName } from './codes.js';

/**
 * Every code a Postern API can throw. Codes that travel on the wire are `ERR_` + a WireCode
 * name; the rest arise locally. Callers branch on `code`; messages may change freely.
 */
export type ErrorCode =
  | `ERR_${Exclude<WireCodeName, 'OK'>}`
  | 'ERR_UNKNOWN'
  | 'ERR_CONFIG'
  | 'ERR_TIMEOUT'
  | 'ERR_ABORTED'
  | 'ERR_TRANSPORT'
  | 'ERR_CLOSED'
  | 'ERR_USAGE';

/** Base of every error Postern throws. */
export class PosternError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'PosternError';
  }
}

/** The peer broke the wire protocol, or refused ours (carries the wire code's name). */
export class ProtocolError extends PosternError {
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'ProtocolError';
  }
}

/** A router or agent answered with a NACK or CLOSE carrying this wire code. */
export class RemoteError extends PosternError {
  readonly wireCode: number;
  constructor(wireCode: number, message: string, options?: { cause?: unknown }) {
    const code = errorCodeOf(wireCode);
    super(code === 'ERR_OK' ? 'ERR_UNKNOWN' : code, message, options);
    this.wireCode = wireCode;
    this.name = 'RemoteError';
  }
}

/** A connection could not be opened or broke. */
export class TransportError extends PosternError {
  /**
   * Trying again with the same settings fails the same way until someone changes them: a proxy
   * refused the tunnel with a 4xx (wrong or missing credentials, port not allowed), or the
   * router's certificate is not trusted. Dialers do not fall back to another transport on such
   * an error, and a gateway treats it like a refused credential.
   */
  readonly permanent: boolean;
  constructor(message: string, options?: { cause?: unknown; permanent?: boolean }) {
    super('ERR_TRANSPORT', message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TransportError';
    this.permanent = options?.permanent === true;
  }
}

export class TimeoutError extends PosternError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_TIMEOUT', message, options);
    this.name = 'TimeoutError';
  }
}

/** An option was missing or invalid; thrown at start, never mid-traffic. */
export class ConfigError extends PosternError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_CONFIG', message, options);
    this.name = 'ConfigError';
  }
}

export class AbortError extends PosternError {
  constructor(message = 'the operation was aborted', options?: { cause?: unknown }) {
    super('ERR_ABORTED', message, options);
    this.name = 'AbortError';
  }
}
