/** A parsed JSON object. */
export type JsonObject = Record<string, unknown>;

export function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Parses bytes that must hold a JSON object; the Error says `${what} is not JSON` or not an object. */
export function parseJsonObject(bytes: Buffer, what: string): JsonObject {
  let body: unknown;
  try {
    body = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new Error(`${what} is not JSON`);
  }
  if (!isObject(body)) throw new Error(`${what} is not a JSON object`);
  return body;
}
