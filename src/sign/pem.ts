/** One block of a PEM file. */
export interface PemBlock {
  readonly label: string;
  readonly der: Buffer;
}

const BLOCK_RE = /-----BEGIN ([A-Z0-9 #]+)-----\r?\n([\s\S]*?)-----END \1-----/g;

/** Every PEM block in `text`, in order (text around them is ignored, as openssl does). */
export function decodePem(text: string): PemBlock[] {
  const out: PemBlock[] = [];
  for (const match of text.matchAll(BLOCK_RE)) {
    const body = (match[2] ?? '').replace(/\s+/g, '');
    out.push({ label: match[1] ?? '', der: Buffer.from(body, 'base64') });
  }
  return out;
}

/** A PEM block with 64-character lines and a final newline, as Go's encoding/pem writes it. */
export function encodePem(label: string, der: Uint8Array): string {
  const base64 = Buffer.from(der).toString('base64');
  const lines = base64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}
