// A bare node:http server answering every request with one fixed body: what node can do on this machine
// with no routing, logging or metrics. Usage: node baseline-server.js <content-type> <base64 body>
// Prints the port it listens on (127.0.0.1, chosen by the kernel) as its first line.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

const contentType = process.argv[2] ?? 'application/octet-stream';
const body = Buffer.from(process.argv[3] ?? '', 'base64');

const server = createServer({ keepAlive: true }, (_req, res) => {
  res.writeHead(200, { 'content-type': contentType, 'content-length': body.byteLength });
  res.end(body);
});
server.keepAliveTimeout = 65_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${(server.address() as AddressInfo).port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
