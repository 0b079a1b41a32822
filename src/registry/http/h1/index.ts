export { H1Server, type H1ServerOptions } from './server.js';
export { H1Request } from './request.js';
export { H1Response, type HeaderValue } from './response.js';
export { HttpProtocolError } from './head.js';
export type { RequestHandler } from './connection.js';
