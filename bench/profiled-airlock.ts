import { spawn } from 'node:child_process';
import { CLI, freePort, waitForHttp, type RunningProcess } from '../test/helpers/processes.js';

/**
 * `airlock serve` under `node --cpu-prof`, which NODE_OPTIONS does not allow (so the test helper's
 * startAirlockProcess cannot do it). The profile is written into `profileDir` when the process exits.
 */
export async function startProfiledAirlock(
  dataDir: string,
  options: { profileDir: string },
): Promise<RunningProcess> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [
      '--cpu-prof',
      `--cpu-prof-dir=${options.profileDir}`,
      CLI,
      'serve',
      '--addr',
      `127.0.0.1:${port}`,
      '--data',
      dataDir,
      '--log-level',
      'warn',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let text = '';
  child.stdout.on('data', (chunk: Buffer) => (text += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (text += chunk.toString()));
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitForHttp(`${url}/v2/`);
  } catch (error) {
    child.kill('SIGKILL');
    throw new Error(`airlock serve --cpu-prof did not start: ${String(error)}\n${text}`);
  }
  return {
    url,
    host: `127.0.0.1:${port}`,
    child,
    dataDir,
    output: () => text,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}
