// H1Server beside node:http (llhttp) on the same raw bytes: well-formed requests and a few hundred
// mutations of them (seeded, so a failure repeats). H1Server may be stricter or more lenient than llhttp
// about what it accepts, but where both take a request at the same place in a connection they must take
// the same one (method, target, framing, body): two parsers that split a byte stream differently are how
// request smuggling starts.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { H1Server } from './index.js';

/** How long a server may stay silent before an exchange is taken to be over. */
const QUIET_MS = 300;

async function readAll(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

/** One line per request a server took: what it understood. The target's absolute form is reduced to its path. */
function describeRequest(method: string, url: string, headers: IncomingHttpHeaders, body: Buffer): string {
  const path = url.replace(/^https?:\/\/[^/]+/i, '') || '/';
  const framing = `te=${String(headers['transfer-encoding'] ?? '-')} cl=${String(headers['content-length'] ?? '-')}`;
  return `${method} ${path} ${framing} body=${createHash('sha256').update(body).digest('hex').slice(0, 12)}`;
}

/**
 * Answers every request with the line that describes it, or 400 when its body failed (as the registry's
 * handlers answer: a server waits for its handler's answer to a request whose body broke off).
 */
async function echo(
  req: AsyncIterable<Uint8Array> & {
    method?: string | undefined;
    url?: string | undefined;
    headers: IncomingHttpHeaders;
  },
  res: {
    writeHead(status: number, headers: Record<string, string | number>): unknown;
    end(body: string): unknown;
  },
): Promise<void> {
  let body: Buffer;
  try {
    body = await readAll(req);
  } catch {
    res.writeHead(400, { 'content-length': 0 });
    res.end('');
    return;
  }
  const text = describeRequest(req.method ?? '', req.url ?? '', req.headers, body);
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * Sends bytes on a fresh connection and returns what came back until the server closed it or went quiet
 * for a while. The connection is not half-closed: llhttp would then answer the end of an incomplete
 * request at once, ahead of the answers to the requests before it.
 */
function exchange(port: number, bytes: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    let quiet = setTimeout(() => socket.destroy(), QUIET_MS);
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString('latin1');
      clearTimeout(quiet);
      quiet = setTimeout(() => socket.destroy(), QUIET_MS);
    });
    socket.on('close', () => {
      clearTimeout(quiet);
      resolve(answer);
    });
    socket.on('error', () => undefined);
    socket.write(bytes);
  });
}

/** The requests a server took (the echoed lines of its 200 answers), up to its first other answer. */
function taken(answer: string): string[] {
  const lines: string[] = [];
  const head = /HTTP\/1\.[01] (\d{3})[^\r]*\r\n([\s\S]*?)\r\n\r\n/g;
  for (let match = head.exec(answer); match; match = head.exec(answer)) {
    const length = Number(/content-length: *(\d+)/i.exec(match[2] ?? '')?.[1] ?? 0);
    const body = answer.slice(head.lastIndex, head.lastIndex + length);
    head.lastIndex += length;
    if (match[1] !== '200') break;
    lines.push(body);
  }
  return lines;
}

const WELL_FORMED = [
  'GET /a HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\n',
  'POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello',
  'POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
  'POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: x\r\n\r\n',
  'POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;e=1\r\nabc\r\n2\r\nde\r\n0\r\nT: t\r\n\r\nGET /z HTTP/1.1\r\nHost: x\r\n\r\n',
  'GET http://x/a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
];

/** The framing tricks request smugglers use, each on its own. */
const TRICKS = [
  'POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /s HTTP/1.1\r\nHost: x\r\n\r\n',
  'POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\nGET /s HTTP/1.1\r\nHost: x\r\n\r\n',
  'POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
  'POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
  'POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\nContent-Length: 5\r\n\r\nhello',
  'POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!',
  'POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello',
  'POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\nhello',
  'POST /p HTTP/1.1\r\nHost: x\r\nX-A: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello',
  'POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n',
  'POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\nhello\r\n0\r\n\r\n',
  'POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a="x\r\ny"\r\nhello\r\n0\r\n\r\n',
  'GET /a HTTP/1.1\r\nHost: x\nContent-Length: 5\r\n\r\nhello',
];

/** mulberry32: a small seeded generator, so that every run tries the same mutations. */
function generator(seed: number): (n: number) => number {
  let state = seed >>> 0;
  return (n) => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
  };
}

function mutations(count: number, seed: number): string[] {
  const random = generator(seed);
  const at = (text: string): number => random(text.length + 1);
  const edits: Array<(text: string) => string> = [
    (t) => t.replace('\r\n', '\n'),
    (t) => ((i) => `${t.slice(0, i)} ${t.slice(i)}`)(at(t)),
    (t) => ((i) => `${t.slice(0, i)}\t${t.slice(i)}`)(at(t)),
    (t) => ((i) => t.slice(0, i) + t.slice(i + 1))(at(t)),
    (t) => ((i) => t.slice(0, i) + t.slice(i, i + 1) + t.slice(i))(at(t)),
    (t) => ((i) => t.slice(0, i) + String.fromCharCode(random(256)) + t.slice(i + 1))(at(t)),
    (t) => t.replace('Transfer-Encoding: chunked', 'Transfer-Encoding: chunked\r\nContent-Length: 5'),
    (t) => t.replace('\r\n\r\n', '\r\nX-A: a\r\n folded\r\n\r\n'),
    (t) => t.replace('\r\n\r\n', '\r\nContent-Length: 3\r\n\r\n'),
  ];
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    let text = WELL_FORMED[random(WELL_FORMED.length)] ?? '';
    for (let edits_ = 1 + random(2); edits_ > 0; edits_--)
      text = (edits[random(edits.length)] ?? String)(text);
    out.push(text);
  }
  return out;
}

describe('H1Server beside node:http', () => {
  let ours: H1Server;
  let theirs: Server;
  const ports = { ours: 0, theirs: 0 };

  before(async () => {
    ours = new H1Server((req, res) => void echo(req, res), {
      headersTimeoutMs: 300,
      keepAliveTimeoutMs: 1000,
    });
    theirs = createServer({ headersTimeout: 300, requestTimeout: 1000 }, (req, res) => void echo(req, res));
    const listen = (server: H1Server | Server): Promise<number> =>
      new Promise((resolve) =>
        server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)),
      );
    ports.ours = await listen(ours);
    ports.theirs = await listen(theirs);
  });

  after(async () => {
    await new Promise<void>((resolve) => ours.close(() => resolve()));
    theirs.closeAllConnections();
    await new Promise<void>((resolve) => theirs.close(() => resolve()));
  });

  /**
   * Compares each stream's requests, 50 streams at a time; returns how many requests both servers took
   * (and so were compared).
   */
  const compare = async (streams: readonly string[]): Promise<number> => {
    let compared = 0;
    for (let first = 0; first < streams.length; first += 50) {
      await Promise.all(
        streams.slice(first, first + 50).map(async (text) => {
          const bytes = Buffer.from(text, 'latin1');
          const [a, b] = await Promise.all([exchange(ports.ours, bytes), exchange(ports.theirs, bytes)]);
          const mine = taken(a);
          const node = taken(b);
          for (let i = 0; i < Math.min(mine.length, node.length); i++) {
            assert.equal(mine[i], node[i], `request ${i + 1} of ${JSON.stringify(text)}`);
            compared += 1;
          }
        }),
      );
    }
    return compared;
  };

  it('takes the same requests from well-formed streams, pipelined ones included', async () => {
    for (const text of WELL_FORMED) {
      const bytes = Buffer.from(text, 'latin1');
      const mine = taken(await exchange(ports.ours, bytes));
      assert.deepEqual(mine, taken(await exchange(ports.theirs, bytes)), JSON.stringify(text));
      assert.ok(mine.length > 0, JSON.stringify(text));
    }
  });

  it('never splits a smuggling attempt into other requests than llhttp does', async () => {
    await compare(TRICKS);
  });

  it(
    'never splits 600 mutated streams into other requests than llhttp does',
    { timeout: 120_000 },
    async () => {
      const compared = await compare(mutations(600, 20261203));
      // Many mutations still leave requests both servers take (98 with this seed): the comparison is not
      // an empty one.
      assert.ok(compared >= 60, `only ${compared} requests were taken by both servers`);
    },
  );
});
