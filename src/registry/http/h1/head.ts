import type { IncomingHttpHeaders } from 'node:http';

/** Largest request head (request line and headers) accepted; more is answered 431. */
export const MAX_HEAD_BYTES = 64 * 1024;

/** A request the server cannot take; the connection answers `status` with `message` and closes. */
export class HttpProtocolError extends Error {
  readonly status: number;

  constructor(status: number, message: string) {
    super(message);
    this.name = 'HttpProtocolError';
    this.status = status;
  }
}

/** How the request body is framed (RFC 9112 section 6). */
export type BodyFraming = { kind: 'none' } | { kind: 'length'; length: number } | { kind: 'chunked' };

export interface RequestHead {
  readonly method: string;
  /** The request target as sent (origin form), e.g. `/v2/a/b/manifests/v1?ns=docker.io`. */
  readonly url: string;
  /** `1.1` or `1.0`. */
  readonly httpVersion: string;
  /** Lower-case names; repeated headers joined with ", " (as node does). */
  readonly headers: IncomingHttpHeaders;
  readonly framing: BodyFraming;
  /** Whether the client wants the connection kept open after this exchange. */
  readonly keepAlive: boolean;
  /** `Expect: 100-continue`: the client waits for an interim answer before it sends the body. */
  readonly expectContinue: boolean;
}

/** Header names and methods (RFC 9110 `token`). */
export const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Field values: visible ASCII, spaces, tabs and obs-text; no control characters (CR, LF, NUL...). */
export const BAD_VALUE = /[\0-\x08\x0a-\x1f\x7f]/;
const DIGITS = /^[0-9]{1,15}$/;

/**
 * Parses a request head (everything before the blank line, without it). Throws HttpProtocolError with
 * the status to answer: 400 for malformed lines or ambiguous body framing (both Content-Length and
 * Transfer-Encoding, conflicting lengths: the request-smuggling cases), 501 for a transfer coding other
 * than chunked, 505 for an HTTP version other than 1.0 and 1.1.
 */
export function parseRequestHead(head: Buffer): RequestHead {
  const text = head.toString('latin1');
  let lineEnd = text.indexOf('\r\n');
  if (lineEnd < 0) lineEnd = text.length;
  const requestLine = text.slice(0, lineEnd);
  const firstSpace = requestLine.indexOf(' ');
  const lastSpace = requestLine.lastIndexOf(' ');
  if (firstSpace <= 0 || lastSpace === firstSpace) {
    throw new HttpProtocolError(400, `Malformed request line "${requestLine.slice(0, 80)}"`);
  }
  const method = requestLine.slice(0, firstSpace);
  const target = requestLine.slice(firstSpace + 1, lastSpace);
  const version = requestLine.slice(lastSpace + 1);
  if (!TOKEN.test(method)) throw new HttpProtocolError(400, `Malformed method "${method.slice(0, 40)}"`);
  if (version !== 'HTTP/1.1' && version !== 'HTTP/1.0') {
    if (/^HTTP\/\d\.\d$/.test(version))
      throw new HttpProtocolError(505, `HTTP version "${version}" is not supported`);
    throw new HttpProtocolError(400, `Malformed request line "${requestLine.slice(0, 80)}"`);
  }
  const url = originForm(target);

  const headers: Record<string, string> = {};
  let position = lineEnd + 2;
  while (position < text.length) {
    let end = text.indexOf('\r\n', position);
    if (end < 0) end = text.length;
    const line = text.slice(position, end);
    position = end + 2;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new HttpProtocolError(400, `Malformed header line "${line.slice(0, 80)}"`);
    const rawName = line.slice(0, colon);
    if (!TOKEN.test(rawName)) {
      // Also refuses obsolete line folding (a line starting with a space), which RFC 9112 lets servers reject.
      throw new HttpProtocolError(400, `Malformed header name "${rawName.slice(0, 40)}"`);
    }
    const name = rawName.toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (BAD_VALUE.test(value)) throw new HttpProtocolError(400, `Header "${name}" has a control character`);
    const previous = headers[name];
    headers[name] = previous === undefined ? value : `${previous}, ${value}`;
  }

  const http11 = version === 'HTTP/1.1';
  if (http11 && headers.host === undefined)
    throw new HttpProtocolError(400, 'HTTP/1.1 request without a Host header');
  const connection = (headers.connection ?? '').toLowerCase();
  const keepAlive = http11
    ? !/(^|,)\s*close\s*(,|$)/.test(connection)
    : /(^|,)\s*keep-alive\s*(,|$)/.test(connection);
  const expect = headers.expect?.toLowerCase();
  if (expect !== undefined && expect !== '100-continue') {
    throw new HttpProtocolError(417, `Expectation "${expect.slice(0, 40)}" is not supported`);
  }
  return {
    method,
    url,
    httpVersion: http11 ? '1.1' : '1.0',
    headers,
    framing: framingOf(headers['transfer-encoding'], headers['content-length']),
    keepAlive,
    expectContinue: http11 && expect === '100-continue',
  };
}

function originForm(target: string): string {
  // Whatever its form: a control character in the path of an absolute target is refused as well.
  if (/[\0-\x20\x7f]/.test(target))
    throw new HttpProtocolError(400, 'The request target has a control character or space');
  if (target.startsWith('/')) return target;
  // Absolute form (what a client talking to a proxy sends): keep the path and query.
  const absolute = /^https?:\/\/[^/?#\s]+(\/[^\s]*)?$/i.exec(target);
  if (absolute) return absolute[1] ?? '/';
  if (target === '*') return '*';
  throw new HttpProtocolError(400, `Malformed request target "${target.slice(0, 80)}"`);
}

function framingOf(transferEncoding: string | undefined, lengths: string | undefined): BodyFraming {
  if (transferEncoding !== undefined) {
    if (lengths !== undefined) {
      throw new HttpProtocolError(
        400,
        'A request with both Content-Length and Transfer-Encoding is ambiguous',
      );
    }
    if (transferEncoding.toLowerCase() !== 'chunked') {
      throw new HttpProtocolError(
        501,
        `Transfer-Encoding "${transferEncoding.slice(0, 40)}" is not supported`,
      );
    }
    return { kind: 'chunked' };
  }
  if (lengths === undefined) return { kind: 'none' };
  const values = new Set(lengths.split(',').map((v) => v.trim()));
  const [only] = values;
  if (values.size !== 1 || only === undefined || !DIGITS.test(only)) {
    throw new HttpProtocolError(400, `Invalid Content-Length "${lengths.slice(0, 40)}"`);
  }
  const length = Number(only);
  return length === 0 ? { kind: 'none' } : { kind: 'length', length };
}
