// A bare node:http server: what node can do on this machine with no routing, logging, metrics, hashing
// or fsync. Usage: node baseline-server.js <content-type> <base64 body> [file]
//   GET …/blobs/…          streams [file] (1 MiB reads), the ceiling for blob downloads
//   GET anything else      answers <base64 body>, the ceiling for manifest GETs
//   POST, PUT, PATCH       read and discard the request body, then 201: the ceiling for uploads
// Prints the port it listens on (127.0.0.1, chosen by the kernel) as its first line.
import { createReadStream, statSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

const contentType = process.argv[2] ?? 'application/octet-stream';
const body = Buffer.from(process.argv[3] ?? '', 'base64');
const file = process.argv[4];

const server = createServer({ keepAlive: true }, (req, res) => {
  if (req.method === 'GET' && file && req.url?.includes('/blobs/')) {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': statSync(file).size });
    createReadStream(file, { highWaterMark: 1024 * 1024 }).pipe(res);
    return;
  }
  if (req.method === 'GET' || req.method === 'HEAD') {
    res.writeHead(200, { 'content-type': contentType, 'content-length': body.byteLength });
    res.end(body);
    return;
  }
  req.on('data', () => {});
  req.on('end', () => {
    res.writeHead(201, { 'content-length': 0 });
    res.end();
  });
});
server.keepAliveTimeout = 65_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${(server.address() as AddressInfo).port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
