// Crash safety of `airlock serve`: concurrent clients push blobs, images and indexes while the server is
// SIGKILLed and restarted on the same data folder a few times. Afterwards every write the server
// acknowledged must still be there, byte for byte, and nothing half-written may be visible.
//
// The run is driven by a seed (printed; replay with CRASH_SEED=<n>). The seed fixes the plan (kill
// delays, sizes, upload methods, contents); thread timing still varies, so a replay is close, not exact.
// CRASH_KEEP=1 keeps the data folder; it is also kept when any check other than the storage gauge fails.
import assert from 'node:assert/strict';
import { rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { Header } from '../../src/oci/index.js';
import {
  AirlockSupervisor,
  CrashHttp,
  Prng,
  blobPath,
  checkBlobTree,
  checkDatabaseCopy,
  contentBytes,
  integrityProblems,
  mapLimit,
  seedFromEnv,
  sha256Digest,
  sleep,
  uploadsDir,
} from '../helpers/crash.js';
import { keepTempDir, tempDir } from '../helpers/processes.js';
import {
  Client,
  Ledger,
  MANIFEST_ACCEPT,
  REPOS,
  Workload,
  Worker,
  pickSize,
  type ProblemArea,
} from './workload.js';

const WORKERS = 16;
/** No new kill round starts after this much time. */
const KILL_PHASE_BUDGET_MS = 40_000;
/**
 * The scenario gives up after this long (a run takes 8-25 s): it stops the load, ends every request and
 * kills the server, then fails with the server's last output. Without a limit, a server that stops
 * answering turns each of a thousand checks into a 10 s timeout and the run into an hour.
 */
const SCENARIO_LIMIT_MS = 80_000;
/** The scenario's hook limit: the time above plus a kill and a clear failure. */
const HOOK_LIMIT_MS = 120_000;
const TEMP_PREFIX = 'tmp-';

interface DownSnapshot {
  /** Temp and orphan files present while no process ran; the next start must remove them. */
  readonly mustVanish: readonly string[];
  /** Digest of content planted as a temp file; it must never be served. */
  readonly plantedDigest: string;
}

/** The test's own view of the run: checks between kills and at the end. */
class CrashCheck {
  readonly #seed: number;
  readonly #w: Workload;
  readonly #checker: Client;
  readonly #verified = new Map<string, number>();

  constructor(seed: number, workload: Workload, checker: Client) {
    this.#seed = seed;
    this.#w = workload;
    this.#checker = checker;
  }

  get #ledger(): Ledger {
    return this.#w.ledger;
  }

  get #dataDir(): string {
    return this.#w.supervisor.dataDir;
  }

  #problems(area: ProblemArea, where: string, problems: readonly string[]): void {
    for (const problem of problems) this.#ledger.problem(area, `${where}: ${problem}`);
  }

  /** While no process runs: blob files, the database as the kill left it, and files to be cleaned. */
  async whileDown(round: number): Promise<DownSnapshot> {
    const names = await uploadsDir(this.#dataDir);
    const temps = names.filter((name) => name.startsWith(TEMP_PREFIX));
    this.#ledger.count('temp files left by kills', temps.length);
    const planted = contentBytes(this.#seed ^ (0x5eed0000 + round), 1000 + round);
    const tempName = `${TEMP_PREFIX}planted-${round}`;
    const orphanName = `orphan-planted-${round}`;
    await writeFile(join(this.#dataDir, 'uploads', tempName), planted);
    await writeFile(join(this.#dataDir, 'uploads', orphanName), planted);
    const tree = await checkBlobTree(this.#dataDir, this.#verified);
    this.#problems('files', `after kill ${round}`, tree.problems);
    this.#problems('database', `copy taken after kill ${round}`, await checkDatabaseCopy(this.#dataDir));
    return { mustVanish: [...temps, tempName, orphanName], plantedDigest: sha256Digest(planted) };
  }

  /** Right after a restart: leftovers gone, nothing planted served, parked sessions consistent. */
  async afterRestart(round: number, down: DownSnapshot): Promise<void> {
    const present = new Set(await uploadsDir(this.#dataDir));
    for (const name of down.mustVanish) {
      if (present.has(name)) this.#ledger.problem('files', `"uploads/${name}" survived restart ${round}`);
    }
    for (const repo of REPOS) {
      for (const method of ['HEAD', 'GET']) {
        const result = await this.#w.http.request({
          method,
          path: `/v2/${repo}/blobs/${down.plantedDigest}`,
        });
        if (result.kind === 'response' && result.status !== 404) {
          this.#ledger.problem(
            'files',
            `${method} of a planted temp file's digest in ${repo} answered ${result.status}`,
          );
        }
      }
    }
    // Starts the storage gauge's bookkeeping early, so later pushes are counted incrementally.
    await this.storageGauge();
    await this.parked({ finishShare: 0.35 });
  }

  /** Every parked session must report exactly what was acknowledged, or be unknown; some are finished. */
  async parked(options: { readonly finishShare: number }): Promise<void> {
    const open = this.#ledger.parked.filter(({ session }) => session.open);
    // Decided up front so the PRNG sequence does not depend on the order answers arrive in.
    const finish = new Set(open.filter(() => this.#checker.p.chance(options.finishShare)));
    await mapLimit(open, 4, async (parked) => {
      const { session, spec } = parked;
      const result = await this.#w.http.request({ method: 'GET', path: session.location });
      if (result.kind === 'interrupted') {
        this.#ledger.problem('sessions', `GET parked ${session.location}: no answer`);
        return;
      }
      const verdict = this.#checker.judgeStatus(session, result);
      if (verdict.kind === 'unknown') {
        this.#ledger.count('parked sessions lost');
        session.open = false;
        return;
      }
      if (verdict.kind !== 'size') {
        if (verdict.kind === 'ambiguous') {
          this.#ledger.problem(
            'sessions',
            `Parked ${session.location} (${session.acked} bytes) is ambiguous`,
          );
        }
        session.open = false;
        return;
      }
      this.#ledger.count('parked sessions intact');
      if (!finish.has(parked)) return;
      const content = contentBytes(spec.seed, spec.size);
      const digest = sha256Digest(content);
      const outcome = await this.#checker.drive(session, content, { digest, ends: [], slow: false });
      if (outcome === 'acked') {
        this.#ledger.ackBlob(session.repo, digest, content.byteLength);
        this.#ledger.count('parked sessions finished');
      } else {
        this.#ledger.problem(
          'sessions',
          `Finishing parked session ${session.location} after a restart: ${outcome}`,
        );
      }
    });
  }

  async storageGauge(): Promise<number | undefined> {
    const result = await this.#w.http.request({ method: 'GET', path: '/metrics' });
    if (result.kind !== 'response' || result.status !== 200) return undefined;
    const match = /^airlock_storage_blob_bytes (\d+)$/m.exec(result.body.toString('utf8'));
    return match ? Number(match[1]) : undefined;
  }

  /** With the load stopped and the last process up: the whole ledger against the server and the disk. */
  async final(): Promise<void> {
    const leftovers = (await uploadsDir(this.#dataDir)).filter((name) => name.startsWith(TEMP_PREFIX));
    if (leftovers.length > 0)
      this.#ledger.problem('files', `Temp files remain after all requests ended: ${leftovers.join(', ')}`);

    await this.parked({ finishShare: 1 });
    for (const session of this.#ledger.sessions) {
      if (!session.open) continue;
      const result = await this.#w.http.request({ method: 'GET', path: session.location });
      if (result.kind === 'response') this.#checker.judgeStatus(session, result);
      else this.#ledger.problem('sessions', `GET ${session.location} at the end: no answer`);
      this.#ledger.count('open sessions checked at the end');
    }

    const tree = await checkBlobTree(this.#dataDir, new Map());
    this.#problems('files', 'final blob tree', tree.problems);
    this.#ledger.count('blob files', tree.files);
    this.#ledger.count('blob bytes', tree.bytes);
    const gauge = await this.storageGauge();
    if (gauge !== tree.bytes) {
      this.#ledger.problem(
        'gauge',
        `airlock_storage_blob_bytes is ${gauge} but blobs/ holds ${tree.bytes} bytes`,
      );
    }

    await this.#blobsServed('final');
    await this.#manifestsServed('final');
    await this.#tagsListed();
  }

  async #blobsServed(when: string): Promise<void> {
    await mapLimit([...this.#ledger.blobs.values()], 8, async (blob) => {
      const path = `/v2/${blob.repo}/blobs/${blob.digest}`;
      const result = await this.#w.http.request({ method: 'GET', path });
      if (result.kind !== 'response') {
        this.#ledger.problem('blobs', `${when}: GET blob ${blob.repo}@${blob.digest}: no answer`);
        return;
      }
      if (result.status !== 200) {
        this.#ledger.problem(
          'blobs',
          `${when}: acknowledged blob ${blob.repo}@${blob.digest} answered ${result.status}`,
        );
      } else if (result.body.byteLength !== blob.size || sha256Digest(result.body) !== blob.digest) {
        this.#ledger.problem(
          'blobs',
          `${when}: acknowledged blob ${blob.repo}@${blob.digest} came back as ${result.body.byteLength} bytes` +
            ` hashing to ${sha256Digest(result.body)}`,
        );
      }
    });
  }

  async #manifestsServed(when: string): Promise<void> {
    await mapLimit(this.#ledger.manifestList, 8, async (manifest) => {
      const result = await this.#w.http.request({
        method: 'GET',
        path: `/v2/${manifest.repo}/manifests/${manifest.digest}`,
        headers: { accept: MANIFEST_ACCEPT },
      });
      if (result.kind !== 'response') {
        this.#ledger.problem(
          'manifests',
          `${when}: GET manifest ${manifest.repo}@${manifest.digest}: no answer`,
        );
        return;
      }
      const name = `${manifest.repo}@${manifest.digest}`;
      if (result.status !== 200)
        this.#ledger.problem('manifests', `${when}: acknowledged manifest ${name} answered ${result.status}`);
      else if (!result.body.equals(manifest.bytes))
        this.#ledger.problem('manifests', `${when}: manifest ${name} has other bytes`);
      else if (result.headers.get('content-type') !== manifest.mediaType) {
        this.#ledger.problem(
          'manifests',
          `${when}: manifest ${name} served as "${result.headers.get('content-type')}"`,
        );
      } else if (result.headers.get(Header.ContentDigest) !== manifest.digest) {
        this.#ledger.problem(
          'manifests',
          `${when}: manifest ${name} served with digest header "${result.headers.get(Header.ContentDigest)}"`,
        );
      }
    });
    for (const [key, state] of this.#ledger.tags) {
      const [repo, tag] = key.split(':') as [string, string];
      const result = await this.#w.http.request({
        method: 'GET',
        path: `/v2/${repo}/manifests/${tag}`,
        headers: { accept: MANIFEST_ACCEPT },
      });
      if (result.kind !== 'response') {
        this.#ledger.problem('manifests', `${when}: GET tag ${key}: no answer`);
        continue;
      }
      if (result.status === 404 && state.acked === undefined) continue;
      const served = result.headers.get(Header.ContentDigest) ?? '';
      if (result.status !== 200 || !state.possible.has(served)) {
        this.#ledger.problem(
          'manifests',
          `${when}: tag ${key} answered ${result.status} "${served}", expected one of ${[...state.possible].join(', ')}`,
        );
        continue;
      }
      const acked = this.#ledger.manifests.get(`${repo}@${served}`);
      if (acked && !result.body.equals(acked.bytes))
        this.#ledger.problem('manifests', `${when}: tag ${key} has other bytes`);
      if (state.acked !== undefined && served !== state.acked)
        this.#ledger.count('tags moved by an unacknowledged push');
    }
  }

  async #tagsListed(): Promise<void> {
    for (const repo of REPOS) {
      const result = await this.#w.http.request({ method: 'GET', path: `/v2/${repo}/tags/list` });
      if (result.kind !== 'response') {
        this.#ledger.problem('manifests', `GET /v2/${repo}/tags/list: no answer`);
        continue;
      }
      const expected = [...this.#ledger.tags]
        .filter(([key, state]) => key.startsWith(`${repo}:`) && state.acked !== undefined)
        .map(([key]) => key.slice(repo.length + 1));
      if (expected.length === 0 && result.status === 404) continue;
      const listed = new Set(
        result.status === 200 ? (JSON.parse(result.body.toString('utf8')) as { tags: string[] }).tags : [],
      );
      const missing = expected.filter((tag) => !listed.has(tag));
      if (missing.length > 0)
        this.#ledger.problem(
          'manifests',
          `tags/list of ${repo} lacks acknowledged tags ${missing.join(', ')}`,
        );
    }
  }

  /** With no process running: the real database, opened as the next start will, against the ledger and files. */
  async database(): Promise<void> {
    const db = new Database(join(this.#dataDir, 'airlock.db'));
    try {
      this.#problems('database', 'final database', integrityProblems(db));
      const manifests = db.prepare('SELECT repository, digest, size FROM manifests').all() as Array<{
        repository: string;
        digest: string;
        size: number;
      }>;
      const links = db.prepare('SELECT repository, digest, size FROM blob_links').all() as Array<{
        repository: string;
        digest: string;
        size: number;
      }>;
      const tags = db.prepare('SELECT repository, name, digest FROM tags').all() as Array<{
        repository: string;
        name: string;
        digest: string;
      }>;
      const manifestKeys = new Set(manifests.map((row) => `${row.repository}@${row.digest}`));
      const linkSizes = new Map(links.map((row) => [`${row.repository}@${row.digest}`, Number(row.size)]));
      const tagDigests = new Map(tags.map((row) => [`${row.repository}:${row.name}`, row.digest]));
      for (const key of this.#ledger.manifests.keys()) {
        if (!manifestKeys.has(key))
          this.#ledger.problem('database', `Database lacks acknowledged manifest ${key}`);
      }
      for (const [key, blob] of this.#ledger.blobs) {
        if (linkSizes.get(key) !== blob.size) {
          this.#ledger.problem(
            'database',
            `Database links ${key} with size ${linkSizes.get(key)}, acknowledged ${blob.size}`,
          );
        }
      }
      for (const [key, state] of this.#ledger.tags) {
        const digest = tagDigests.get(key);
        if (state.acked !== undefined && (digest === undefined || !state.possible.has(digest))) {
          this.#ledger.problem(
            'database',
            `Database has tag ${key} → ${digest}, expected one of ${[...state.possible].join(', ')}`,
          );
        }
      }
      for (const row of tags) {
        if (!manifestKeys.has(`${row.repository}@${row.digest}`)) {
          this.#ledger.problem(
            'database',
            `Tag ${row.repository}:${row.name} points at ${row.digest}, which has no manifest row`,
          );
        }
      }
      // Whatever the database calls visible must have its bytes on disk.
      for (const row of [...manifests, ...links]) {
        const size = await stat(blobPath(this.#dataDir, row.digest)).then(
          (info) => info.size,
          () => undefined,
        );
        if (size !== Number(row.size)) {
          this.#ledger.problem(
            'database',
            `${row.repository}@${row.digest} is in the database (${row.size} bytes) but its file has ${size}`,
          );
        }
      }
      this.#ledger.count('manifest rows', manifests.length);
      this.#ledger.count('blob link rows', links.length);
    } finally {
      db.close();
    }
  }

  /**
   * After one more restart with no load: the storage gauge's first walk matches the blob files exactly
   * (temp files are not counted), and everything acknowledged is still served.
   */
  async afterLastRestart(down: DownSnapshot): Promise<void> {
    const present = new Set(await uploadsDir(this.#dataDir));
    for (const name of down.mustVanish) {
      if (present.has(name)) this.#ledger.problem('files', `"uploads/${name}" survived the last restart`);
    }
    const tree = await checkBlobTree(this.#dataDir, this.#verified);
    const gauge = await this.storageGauge();
    if (gauge !== tree.bytes) {
      this.#ledger.problem(
        'files',
        `After a quiet restart airlock_storage_blob_bytes is ${gauge}, blobs/ holds ${tree.bytes}`,
      );
    }
    await this.#manifestsServed('after the last restart');
    await mapLimit([...this.#ledger.blobs.values()], 8, async (blob) => {
      const result = await this.#w.http.request({
        method: 'HEAD',
        path: `/v2/${blob.repo}/blobs/${blob.digest}`,
      });
      if (result.kind !== 'response') {
        this.#ledger.problem('blobs', `after the last restart: HEAD ${blob.repo}@${blob.digest}: no answer`);
        return;
      }
      if (result.status !== 200 || result.headers.get('content-length') !== String(blob.size)) {
        this.#ledger.problem(
          'blobs',
          `after the last restart: HEAD ${blob.repo}@${blob.digest} answered ${result.status}`,
        );
      }
    });
  }
}

function report(ledger: Ledger, http: CrashHttp): string {
  const stats = [...ledger.stats].map(([name, n]) => `${name}=${n}`).join(', ');
  const statuses = [...http.counts].map(([status, n]) => `${status}:${n}`).join(' ');
  return [
    `acknowledged: ${ledger.blobs.size} blob links, ${ledger.manifests.size} manifests, ${ledger.tags.size} tags`,
    `stats: ${stats}`,
    `responses: ${statuses}`,
  ].join('\n# ');
}

/** Error and fatal lines (pino levels 50 and 60) in the server logs. */
function logErrors(logs: readonly string[]): string[] {
  const lines: string[] = [];
  for (const [epoch, log] of logs.entries()) {
    for (const line of log.split('\n')) {
      if (/"level":(50|60)\b/.test(line)) lines.push(`process ${epoch + 1} logged: ${line.slice(0, 400)}`);
    }
  }
  return lines;
}

interface CrashRun {
  readonly seed: number;
  readonly dataDir: string;
  readonly ledger: Ledger;
}

/** Runs the whole scenario once; the tests below each judge one area of its problems. */
async function runScenario(): Promise<CrashRun> {
  const started = Date.now();
  const seed = seedFromEnv();
  const plan = new Prng(seed);
  const delays = Array.from({ length: plan.int(3, 5) }, () => plan.int(200, 1500));
  const tail = plan.int(300, 800);
  const shared = Array.from({ length: 8 }, (_, i) => ({ seed: 0xc0ffee00 + i, size: pickSize(plan) }));
  const dataDir = await tempDir('airlock-crash-');
  console.log(`# crash-safety seed=${seed} (replay: CRASH_SEED=${seed}); data ${dataDir}`);
  console.log(
    `# plan: ${WORKERS} clients, ${delays.length} SIGKILLs after ${delays.join(', ')} ms of load, then ${tail} ms`,
  );

  const supervisor = new AirlockSupervisor(dataDir);
  const ledger = new Ledger();
  const http = new CrashHttp(supervisor, {
    onProblem: (message) => ledger.problem('server', message),
    timeoutMs: 10_000,
  });
  const workload = new Workload(supervisor, http, ledger, shared);
  const check = new CrashCheck(seed, workload, new Client(plan.fork(WORKERS), workload));

  let phase = 'start';
  let outOfTime = false;
  /** The problems found before the scenario gave up (those after are its consequence). */
  let problemsAtLimit: string[] = [];
  const limit = setTimeout(() => {
    outOfTime = true;
    problemsAtLimit = [...ledger.problems].flatMap(([area, list]) =>
      list.slice(0, 3).map((problem) => `${area}: ${problem}`),
    );
    workload.stopping = true;
    http.giveUp();
    supervisor.fail(new Error(`the crash scenario ran out of time during ${phase}`));
  }, SCENARIO_LIMIT_MS);
  /** Enters the next phase, or stops the scenario with what is known once it ran out of time. */
  const enter = (next: string): void => {
    if (outOfTime) {
      keepTempDir(dataDir);
      const output = supervisor.logs().at(-1)?.slice(-3000) ?? '';
      throw new Error(
        `seed ${seed}: the scenario ran past ${SCENARIO_LIMIT_MS} ms during ${phase}; data kept in ${dataDir}\n` +
          `${report(ledger, http)}\n` +
          `problems found before that:\n${problemsAtLimit.join('\n') || '(none)'}\nlast server output:\n${output}`,
      );
    }
    phase = next;
  };
  try {
    return await runPhases();
  } finally {
    clearTimeout(limit);
    // Whatever happened, no server outlives the scenario.
    await supervisor.kill();
  }

  async function runPhases(): Promise<CrashRun> {
    await supervisor.start();
    const workers = Array.from({ length: WORKERS }, (_, i) => new Worker(i, plan.fork(i), workload).run());
    let kills = 0;
    /** Per kill: ms down before the restart / ms to start / ms of checks after it. */
    const rounds: string[] = [];
    try {
      for (const delay of delays) {
        if (Date.now() - started > KILL_PHASE_BUDGET_MS) break;
        enter(`kill round ${kills + 1}`);
        await sleep(delay);
        const t0 = Date.now();
        await supervisor.kill();
        kills++;
        const down = await check.whileDown(kills);
        const t1 = Date.now();
        await supervisor.start();
        const t2 = Date.now();
        await check.afterRestart(kills, down);
        rounds.push(`${t1 - t0}/${t2 - t1}/${Date.now() - t2}`);
      }
      await sleep(tail);
    } catch (error) {
      supervisor.fail(error);
      throw error;
    } finally {
      workload.stopping = true;
      for (const outcome of await Promise.allSettled(workers)) {
        if (outcome.status === 'rejected')
          ledger.problem('server', `A client crashed: ${String(outcome.reason)}`);
      }
    }
    const loadMs = Date.now() - started;

    enter('the final checks');
    await check.final();
    const finalMs = Date.now() - started - loadMs;
    enter('the last kill');
    await supervisor.kill();
    const down = await check.whileDown(kills + 1);
    await check.database();
    enter('the last restart');
    await supervisor.start();
    await check.afterLastRestart(down);
    enter('the last stop');
    const logs = supervisor.logs();
    await supervisor.stop();
    for (const line of logErrors(logs)) ledger.problem('server', line);

    console.log(
      `# ${kills} kills under load + 1 final; load ${loadMs} ms (down/start/checks per kill: ${rounds.join(', ')}),` +
        ` final checks ${finalMs} ms, total ${Date.now() - started} ms`,
    );
    console.log(`# ${report(ledger, http)}`);
    for (const [area, list] of ledger.problems)
      console.log(`# ${list.length} ${area} problems, first: ${list[0] ?? ''}`);
    return { seed, dataDir, ledger };
  }
}

describe('crash safety: SIGKILL under concurrent pushes, restart on the same data folder', () => {
  let run: CrashRun | undefined;

  before(
    async () => {
      run = await runScenario();
    },
    { timeout: HOOK_LIMIT_MS },
  );

  after(async () => {
    // The storage gauge is a known bug (see its test); it alone does not make the data worth keeping.
    const serious = run ? run.ledger.problemCount - run.ledger.problemsIn('gauge').length : 0;
    if (run && serious === 0 && process.env.CRASH_KEEP !== '1') {
      await rm(run.dataDir, { recursive: true, force: true });
    } else if (run) {
      keepTempDir(run.dataDir);
      console.log(`# data kept in ${run.dataDir}; replay with CRASH_SEED=${run.seed}`);
    }
  });

  const none = (area: ProblemArea): void => {
    assert.ok(run, 'the scenario did not run');
    const problems = run.ledger.problemsIn(area);
    assert.deepEqual(problems.slice(0, 30), [], `seed ${run.seed}: ${problems.length} ${area} problems`);
  };

  it('answers no request with a 5xx, logs no error and drops no connection it was not killed on', () => {
    none('server');
  });

  it('serves every acknowledged blob with its bytes, before and after a last quiet restart', () => {
    none('blobs');
  });

  it('serves every acknowledged manifest by digest, and each tag at its last acknowledged push', () => {
    none('manifests');
  });

  it('never shows a blob file whose bytes differ from its name, and removes temp files on start', () => {
    none('files');
  });

  it('leaves a SQLite database that passes integrity_check and holds every acknowledged write', () => {
    none('database');
  });

  it('reports open upload sessions as 204 with a consistent Range or 404 BLOB_UPLOAD_UNKNOWN, and resumes them', () => {
    none('sessions');
  });

  it('keeps airlock_storage_blob_bytes equal to the blob bytes on disk under concurrent pushes', () => {
    none('gauge');
  });
});
