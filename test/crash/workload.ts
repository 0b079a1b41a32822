// The push workload of the crash-safety test: clients that upload blobs (monolithic, chunked, mounted)
// and push manifests and indexes, and a ledger of everything the registry acknowledged, so the test can
// check afterwards that no acknowledged write was lost to a SIGKILL.
import { Header, MediaType } from '../../src/oci/index.js';
import {
  contentBytes,
  errorCode,
  sha256Digest,
  trickle,
  type AirlockSupervisor,
  type CrashHttp,
  type HttpResult,
  type Prng,
} from '../helpers/crash.js';

export const REPOS = ['crash/alpha', 'crash/beta', 'crash/gamma/nested', 'crash/delta'] as const;

/** Tries per operation before a client gives up on it (each kill costs one try). */
const MAX_ATTEMPTS = 8;

export const MANIFEST_ACCEPT = [MediaType.OciManifest, MediaType.OciIndex].join(', ');

export interface BlobSpec {
  readonly seed: number;
  readonly size: number;
}

export interface AckedBlob {
  readonly repo: string;
  readonly digest: string;
  readonly size: number;
}

export interface AckedManifest {
  readonly repo: string;
  readonly digest: string;
  readonly mediaType: string;
  readonly kind: 'image' | 'index';
  readonly bytes: Buffer;
}

/** What a tag may point at: the last acknowledged push, or a later push that died with the server. */
export interface TagState {
  acked: string | undefined;
  readonly possible: Set<string>;
}

/** A resumable upload as the client sees it. */
export interface UploadSession {
  readonly repo: string;
  /** `/v2/<repo>/blobs/uploads/<id>`, relative so it survives a new port. */
  readonly location: string;
  /** Bytes the server acknowledged (202) or reported (GET status). */
  acked: number;
  /** Bytes of the request that was running when the server died (the server may hold a prefix). */
  inflight: number;
  open: boolean;
}

export interface ParkedSession {
  readonly session: UploadSession;
  readonly spec: BlobSpec;
}

/** What a problem is about; the test has one assertion per area. */
export type ProblemArea = 'server' | 'blobs' | 'manifests' | 'files' | 'database' | 'sessions' | 'gauge';

/** Blob sizes from 0 bytes to 4 MiB, most of them small. */
export function pickSize(p: Prng): number {
  const r = p.next();
  if (r < 0.08) return 0;
  if (r < 0.35) return p.int(1, 4096);
  if (r < 0.75) return p.int(4097, 256 * 1024);
  if (r < 0.95) return p.int(256 * 1024 + 1, 1024 * 1024);
  return p.int(1024 * 1024 + 1, 4 * 1024 * 1024);
}

/** Everything the registry acknowledged, plus the problems and counters of the run. */
export class Ledger {
  readonly blobs = new Map<string, AckedBlob>();
  readonly manifests = new Map<string, AckedManifest>();
  readonly manifestList: AckedManifest[] = [];
  readonly tags = new Map<string, TagState>();
  readonly sessions: UploadSession[] = [];
  readonly parked: ParkedSession[] = [];
  readonly problems = new Map<ProblemArea, string[]>();
  readonly stats = new Map<string, number>();

  problem(area: ProblemArea, message: string): void {
    const list = this.problems.get(area) ?? [];
    list.push(message);
    this.problems.set(area, list);
  }

  problemsIn(area: ProblemArea): string[] {
    return this.problems.get(area) ?? [];
  }

  get problemCount(): number {
    let n = 0;
    for (const list of this.problems.values()) n += list.length;
    return n;
  }

  count(name: string, by = 1): void {
    this.stats.set(name, (this.stats.get(name) ?? 0) + by);
  }

  ackBlob(repo: string, digest: string, size: number): void {
    this.blobs.set(`${repo}@${digest}`, { repo, digest, size });
  }

  reposWithBlob(digest: string): string[] {
    return REPOS.filter((repo) => this.blobs.has(`${repo}@${digest}`));
  }

  ackManifest(manifest: AckedManifest): void {
    const key = `${manifest.repo}@${manifest.digest}`;
    if (this.manifests.has(key)) return;
    this.manifests.set(key, manifest);
    this.manifestList.push(manifest);
  }

  imagesIn(repo: string): AckedManifest[] {
    return this.manifestList.filter((m) => m.repo === repo && m.kind === 'image');
  }

  /** Before a tag push: from now on the tag may point at `digest`, whatever the answer. */
  tagAttempt(key: string, digest: string): void {
    const state = this.tags.get(key) ?? { acked: undefined, possible: new Set<string>() };
    state.possible.add(digest);
    this.tags.set(key, state);
  }

  /** After a 201 for a tag push: the tag points at `digest` (only this client writes this tag). */
  tagAcked(key: string, digest: string): void {
    this.tags.set(key, { acked: digest, possible: new Set([digest]) });
  }
}

/** Shared state of one run: the server, the ledger and the stop flag. */
export class Workload {
  stopping = false;

  constructor(
    readonly supervisor: AirlockSupervisor,
    readonly http: CrashHttp,
    readonly ledger: Ledger,
    /** Contents several clients upload, so concurrent identical blobs and dedup are exercised. */
    readonly shared: readonly BlobSpec[],
  ) {}
}

type Outcome = 'acked' | 'interrupted' | 'failed';

type StatusVerdict =
  | { readonly kind: 'size'; readonly size: number }
  | { readonly kind: 'unknown' }
  | { readonly kind: 'ambiguous' }
  | { readonly kind: 'bad' };

function summarize(result: HttpResult): string {
  if (result.kind === 'interrupted') return `interrupted (${String(result.error)})`;
  return `${result.status} ${result.body.toString('utf8').slice(0, 300)}`;
}

/** Registry operations with crash handling, shared by the load clients and the test's checker. */
export class Client {
  constructor(
    readonly p: Prng,
    readonly w: Workload,
  ) {}

  protected unexpected(area: ProblemArea, what: string, result: HttpResult): void {
    // 5xx answers were already reported by CrashHttp.
    if (result.kind === 'response' && result.status >= 500) return;
    this.w.ledger.problem(area, `${what}: unexpected ${summarize(result)}`);
  }

  /** Uploads `content` into `repo` until the registry acknowledges it; false when it never did. */
  async ensureBlob(repo: string, content: Buffer): Promise<boolean> {
    const digest = sha256Digest(content);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      await this.w.supervisor.waitUp();
      const outcome = await this.#upload(repo, content, digest);
      if (outcome === 'acked') {
        this.w.ledger.ackBlob(repo, digest, content.byteLength);
        return true;
      }
      if (outcome === 'failed') return false;
    }
    this.w.ledger.count('gave up');
    return false;
  }

  async #upload(repo: string, content: Buffer, digest: string): Promise<Outcome> {
    const r = this.p.next();
    const mountable = this.w.ledger.reposWithBlob(digest).filter((other) => other !== repo);
    if (r < 0.08 && mountable.length > 0) return this.#mount(repo, digest, this.p.pick(mountable));
    if (r < 0.45) return this.#monolithic(repo, content, digest);
    return this.#chunked(repo, content, digest);
  }

  async #monolithic(repo: string, content: Buffer, digest: string): Promise<Outcome> {
    const slow = this.p.chance(0.25);
    const result = await this.w.http.request({
      method: 'POST',
      path: `/v2/${repo}/blobs/uploads/?digest=${digest}`,
      headers: { 'content-type': 'application/octet-stream' },
      body: slow ? trickle(content, this.p.int(3, 8), this.p.int(5, 30)) : content,
    });
    if (result.kind === 'interrupted') return 'interrupted';
    if (result.status === 201 && result.headers.get(Header.ContentDigest) === digest) {
      this.w.ledger.count(slow ? 'ack monolithic streamed' : 'ack monolithic');
      return 'acked';
    }
    this.unexpected('blobs', `POST ?digest=${digest} (${content.byteLength} bytes) in ${repo}`, result);
    return 'failed';
  }

  async #mount(repo: string, digest: string, from: string): Promise<Outcome> {
    const result = await this.w.http.request({
      method: 'POST',
      path: `/v2/${repo}/blobs/uploads/?mount=${digest}&from=${encodeURIComponent(from)}`,
    });
    if (result.kind === 'interrupted') return 'interrupted';
    if (result.status === 201) {
      this.w.ledger.count('ack mount');
      return 'acked';
    }
    if (result.status === 202) {
      this.w.ledger.problem(
        'blobs',
        `Mounting ${digest} from ${from}, where it was acknowledged, opened a session instead`,
      );
      const location = result.headers.get('location');
      if (location) await this.w.http.request({ method: 'DELETE', path: location });
      return 'failed';
    }
    this.unexpected('blobs', `mount ${digest} from ${from} into ${repo}`, result);
    return 'failed';
  }

  /** POST /blobs/uploads/: a new session, recorded in the ledger. */
  async openSession(repo: string): Promise<UploadSession | 'interrupted' | 'failed'> {
    const result = await this.w.http.request({ method: 'POST', path: `/v2/${repo}/blobs/uploads/` });
    if (result.kind === 'interrupted') return 'interrupted';
    const location = result.headers.get('location');
    const prefix = `/v2/${repo}/blobs/uploads/`;
    if (result.status !== 202 || !location?.startsWith(prefix)) {
      this.unexpected('sessions', `POST ${prefix}`, result);
      return 'failed';
    }
    if (result.headers.get('range') !== '0-0') {
      this.w.ledger.problem(
        'sessions',
        `New session ${location} reports Range "${result.headers.get('range')}"`,
      );
    }
    const session: UploadSession = { repo, location, acked: 0, inflight: 0, open: true };
    this.w.ledger.sessions.push(session);
    return session;
  }

  async #chunked(repo: string, content: Buffer, digest: string): Promise<Outcome> {
    const total = content.byteLength;
    const pieces = total === 0 ? 0 : this.p.int(1, Math.min(5, total));
    const cuts = new Set<number>();
    while (cuts.size < pieces - 1) cuts.add(this.p.int(1, total - 1));
    let ends = [...cuts].sort((a, b) => a - b);
    // Sometimes the last piece rides on the closing PUT instead of a PATCH.
    if (pieces > 0 && !this.p.chance(0.3)) ends = [...ends, total];
    const opened = await this.openSession(repo);
    if (typeof opened === 'string') return opened;
    return this.drive(opened, content, { digest, ends, slow: this.p.chance(0.3) });
  }

  /**
   * Sends the rest of `content` to `session` (a PATCH per piece ending at each of `ends`, then the
   * closing PUT with whatever is left), resuming from the server's Range after a kill.
   */
  async drive(
    session: UploadSession,
    content: Buffer,
    plan: { readonly digest: string; readonly ends: readonly number[]; readonly slow: boolean },
  ): Promise<Outcome> {
    const total = content.byteLength;
    const body = (bytes: Buffer): Buffer | AsyncIterable<Uint8Array> =>
      plan.slow ? trickle(bytes, this.p.int(3, 8), this.p.int(5, 30)) : bytes;
    for (let step = 0; step < 4 * MAX_ATTEMPTS; step++) {
      const next = plan.ends.find((end) => end > session.acked);
      if (next !== undefined) {
        const chunk = content.subarray(session.acked, next);
        session.inflight = chunk.byteLength;
        const result = await this.w.http.request({
          method: 'PATCH',
          path: session.location,
          headers: {
            'content-type': 'application/octet-stream',
            'content-range': `${session.acked}-${next - 1}`,
          },
          body: body(chunk),
        });
        if (result.kind === 'interrupted') {
          if (!(await this.recover(session, 'PATCH', content))) return 'interrupted';
          continue;
        }
        if (result.status !== 202) {
          this.unexpected('sessions', `PATCH ${session.location} ${session.acked}-${next - 1}`, result);
          session.open = false;
          return 'failed';
        }
        const range = result.headers.get('range');
        if (range !== `0-${next - 1}`) {
          this.w.ledger.problem(
            'sessions',
            `PATCH ${session.location} up to ${next} bytes answered Range "${range}"`,
          );
        }
        session.acked = next;
        session.inflight = 0;
        continue;
      }
      const rest = content.subarray(session.acked);
      session.inflight = rest.byteLength;
      const result = await this.w.http.request({
        method: 'PUT',
        path: `${session.location}?digest=${plan.digest}`,
        headers: {
          'content-type': 'application/octet-stream',
          ...(rest.byteLength > 0 ? { 'content-range': `${session.acked}-${total - 1}` } : {}),
        },
        ...(rest.byteLength > 0 ? { body: body(rest) } : {}),
      });
      if (result.kind === 'interrupted') {
        if (!(await this.recover(session, 'PUT', content))) return 'interrupted';
        continue;
      }
      session.open = false;
      session.inflight = 0;
      if (result.status === 201 && result.headers.get(Header.ContentDigest) === plan.digest) {
        this.w.ledger.count(plan.ends.length > 0 ? 'ack chunked' : 'ack session + PUT');
        return 'acked';
      }
      this.unexpected(
        'sessions',
        `PUT ${session.location}?digest=${plan.digest} (${total} bytes, ${rest.byteLength} in the PUT)`,
        result,
      );
      return 'failed';
    }
    this.w.ledger.problem(
      'sessions',
      `Upload ${session.location} did not finish after ${4 * MAX_ATTEMPTS} requests`,
    );
    return 'failed';
  }

  /** Judges a GET on an upload session against what the client knows was sent. */
  judgeStatus(session: UploadSession, result: Extract<HttpResult, { kind: 'response' }>): StatusVerdict {
    if (result.status === 404) {
      if (errorCode(result.body) === 'BLOB_UPLOAD_UNKNOWN') return { kind: 'unknown' };
      this.unexpected('sessions', `GET ${session.location}`, result);
      return { kind: 'bad' };
    }
    if (result.status !== 204) {
      this.unexpected('sessions', `GET ${session.location}`, result);
      return { kind: 'bad' };
    }
    const range = result.headers.get('range') ?? '';
    const match = /^0-(\d+)$/.exec(range);
    if (!match) {
      this.w.ledger.problem('sessions', `GET ${session.location} answered 204 with Range "${range}"`);
      return { kind: 'bad' };
    }
    if (result.headers.get('location') !== session.location) {
      this.w.ledger.problem(
        'sessions',
        `GET ${session.location} answered Location "${result.headers.get('location')}"`,
      );
    }
    const end = Number(match[1]);
    const low = session.acked;
    const high = session.acked + session.inflight;
    // "0-0" is what the protocol says for both 0 and 1 stored bytes.
    const candidates = end === 0 ? [0, 1] : [end + 1];
    const valid = candidates.filter((size) => size >= low && size <= high);
    if (valid.length === 0) {
      this.w.ledger.problem(
        'sessions',
        `Upload ${session.location} reports Range "${range}" but ${low} bytes were acknowledged` +
          ` and ${session.inflight} more were in flight`,
      );
      return { kind: 'bad' };
    }
    if (valid.length > 1) return { kind: 'ambiguous' };
    return { kind: 'size', size: valid[0] as number };
  }

  /**
   * After a kill: asks the new process where the upload stands; true when it can be continued.
   * `lost` is the request the kill interrupted.
   */
  async recover(session: UploadSession, lost: 'PATCH' | 'PUT', content: Buffer): Promise<boolean> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      await this.w.supervisor.waitUp();
      const result = await this.w.http.request({ method: 'GET', path: session.location });
      if (result.kind === 'interrupted') continue;
      const verdict = this.judgeStatus(session, result);
      switch (verdict.kind) {
        case 'size':
          this.w.ledger.count(
            verdict.size === session.acked
              ? 'resumed at acknowledged offset'
              : 'resumed inside the lost request',
          );
          session.acked = verdict.size;
          session.inflight = 0;
          return true;
        case 'unknown':
          // After a lost PUT the upload may have been committed already; after a lost PATCH the
          // session was acknowledged (202) and forgetting it is allowed but worth counting.
          this.w.ledger.count(`session unknown after a lost ${lost}`);
          session.open = false;
          return false;
        case 'ambiguous':
          return this.#probeFirstByte(session, content);
        case 'bad':
          session.open = false;
          return false;
      }
    }
    return false;
  }

  /**
   * Range "0-0" means 0 or 1 stored bytes. Sending the first byte at offset 0 settles it: 202 if the
   * upload was empty, 416 if it already held that byte; either way it then holds exactly 1 byte.
   */
  async #probeFirstByte(session: UploadSession, content: Buffer): Promise<boolean> {
    const result = await this.w.http.request({
      method: 'PATCH',
      path: session.location,
      headers: { 'content-type': 'application/octet-stream', 'content-range': '0-0' },
      body: content.subarray(0, 1),
    });
    if (result.kind === 'response' && (result.status === 202 || result.status === 416)) {
      this.w.ledger.count(`resumed after probing "0-0" (${result.status})`);
      session.acked = 1;
      session.inflight = 0;
      return true;
    }
    this.unexpected('sessions', `PATCH ${session.location} 0-0 to probe Range "0-0"`, result);
    session.open = false;
    return false;
  }

  /** PUT a manifest by tag or digest until acknowledged; records the tag's possible values. */
  async pushManifest(
    repo: string,
    reference: string,
    manifest: { readonly bytes: Buffer; readonly mediaType: string; readonly kind: 'image' | 'index' },
  ): Promise<boolean> {
    const digest = sha256Digest(manifest.bytes);
    const tagKey = reference.startsWith('sha256:') ? undefined : `${repo}:${reference}`;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      await this.w.supervisor.waitUp();
      if (tagKey) this.w.ledger.tagAttempt(tagKey, digest);
      const result = await this.w.http.request({
        method: 'PUT',
        path: `/v2/${repo}/manifests/${reference}`,
        headers: { 'content-type': manifest.mediaType },
        body: manifest.bytes,
      });
      if (result.kind === 'interrupted') continue;
      if (result.status === 201 && result.headers.get(Header.ContentDigest) === digest) {
        this.w.ledger.ackManifest({ repo, digest, ...manifest });
        if (tagKey) this.w.ledger.tagAcked(tagKey, digest);
        this.w.ledger.count(`ack ${manifest.kind} by ${tagKey ? 'tag' : 'digest'}`);
        return true;
      }
      this.unexpected(
        'manifests',
        `PUT /v2/${repo}/manifests/${reference} (${manifest.kind} ${digest})`,
        result,
      );
      return false;
    }
    this.w.ledger.count('gave up');
    return false;
  }
}

/** One load client: pushes images and indexes, parks sessions and reads back what was acknowledged. */
export class Worker extends Client {
  readonly #id: number;
  #n = 0;

  constructor(id: number, p: Prng, w: Workload) {
    super(p, w);
    this.#id = id;
  }

  async run(): Promise<void> {
    while (!this.w.stopping) {
      await this.w.supervisor.waitUp();
      const r = this.p.next();
      if (r < 0.07) await this.#parkSession();
      else if (r < 0.15) await this.#readBack();
      else if (r < 0.3) await this.#pushIndex();
      else await this.#pushImage();
    }
  }

  #layer(): Buffer {
    if (this.p.chance(0.12)) {
      const spec = this.p.pick(this.w.shared);
      return contentBytes(spec.seed, spec.size);
    }
    return contentBytes(this.p.uint32(), pickSize(this.p));
  }

  async #pushImage(): Promise<void> {
    const repo = this.p.pick(REPOS);
    const n = ++this.#n;
    const layers = Array.from({ length: this.p.int(1, 3) }, () => this.#layer());
    const config = Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        rootfs: { type: 'layers', diff_ids: layers.map((layer) => sha256Digest(layer)) },
        config: { Labels: { 'crash.worker': String(this.#id), 'crash.n': String(n) } },
      }),
    );
    for (const blob of [config, ...layers]) {
      if (!(await this.ensureBlob(repo, blob))) return;
    }
    const manifest = {
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: { mediaType: MediaType.OciConfig, digest: sha256Digest(config), size: config.byteLength },
      layers: layers.map((layer) => ({
        mediaType: MediaType.OciLayer,
        digest: sha256Digest(layer),
        size: layer.byteLength,
      })),
      annotations: { 'org.example.crash': `${this.#id}.${n}` },
    };
    const bytes = Buffer.from(JSON.stringify(manifest));
    const reference = this.p.chance(0.6) ? `w${this.#id}-t${this.p.int(0, 3)}` : sha256Digest(bytes);
    await this.pushManifest(repo, reference, { bytes, mediaType: MediaType.OciManifest, kind: 'image' });
  }

  async #pushIndex(): Promise<void> {
    const repo = this.p.pick(REPOS);
    const images = this.w.ledger.imagesIn(repo);
    if (images.length === 0) return this.#pushImage();
    const chosen = new Set<AckedManifest>();
    const want = this.p.int(1, Math.min(3, images.length));
    while (chosen.size < want) chosen.add(this.p.pick(images));
    const architectures = ['amd64', 'arm64', 's390x'];
    const index = {
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: [...chosen].map((image, i) => ({
        mediaType: image.mediaType,
        digest: image.digest,
        size: image.bytes.byteLength,
        platform: { architecture: architectures[i] ?? 'amd64', os: 'linux' },
      })),
      annotations: { 'org.example.crash': `${this.#id}.${++this.#n}` },
    };
    const bytes = Buffer.from(JSON.stringify(index));
    const reference = this.p.chance(0.5) ? `w${this.#id}-idx${this.p.int(0, 1)}` : sha256Digest(bytes);
    await this.pushManifest(repo, reference, { bytes, mediaType: MediaType.OciIndex, kind: 'index' });
  }

  /** Opens a session, sends part of a blob and leaves it for the test to check after the next kill. */
  async #parkSession(): Promise<void> {
    const repo = this.p.pick(REPOS);
    const spec = { seed: this.p.uint32(), size: pickSize(this.p) };
    const session = await this.openSession(repo);
    if (typeof session === 'string') return;
    const sent = this.p.int(0, spec.size);
    if (sent > 0) {
      session.inflight = sent;
      const result = await this.w.http.request({
        method: 'PATCH',
        path: session.location,
        headers: { 'content-type': 'application/octet-stream', 'content-range': `0-${sent - 1}` },
        body: contentBytes(spec.seed, spec.size).subarray(0, sent),
      });
      if (result.kind === 'interrupted') {
        if (!(await this.recover(session, 'PATCH', contentBytes(spec.seed, spec.size)))) return;
      } else if (result.status === 202) {
        session.acked = sent;
        session.inflight = 0;
      } else {
        this.unexpected('sessions', `PATCH ${session.location} 0-${sent - 1}`, result);
        return;
      }
    }
    this.w.ledger.parked.push({ session, spec });
    this.w.ledger.count('parked sessions');
  }

  /** Reads an acknowledged manifest back while the load (and the kills) go on. */
  async #readBack(): Promise<void> {
    const list = this.w.ledger.manifestList;
    if (list.length === 0) return;
    const manifest = this.p.pick(list);
    const result = await this.w.http.request({
      method: 'GET',
      path: `/v2/${manifest.repo}/manifests/${manifest.digest}`,
      headers: { accept: MANIFEST_ACCEPT },
    });
    if (result.kind === 'interrupted') return;
    this.w.ledger.count('read-backs');
    if (result.status !== 200 || !result.body.equals(manifest.bytes)) {
      this.unexpected(
        'manifests',
        `Read-back of acknowledged manifest ${manifest.repo}@${manifest.digest}`,
        result,
      );
    }
  }
}
