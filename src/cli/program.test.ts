import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { Command } from 'commander';
import { COMMAND_NAMES, requestedGroup } from './command-names.js';
import { buildProgram, COMMAND_GROUPS, requestedCommand } from './program.js';

/** The top-level names (aliases too) a program has, sorted. */
function namesOf(program: Command): string[] {
  return program.commands.flatMap((command) => [command.name(), ...command.aliases()]).sort();
}

const ALL_NAMES = COMMAND_GROUPS.flatMap((group) => group.names).sort();

describe('CLI command groups', () => {
  it('each group registers exactly the names it lists, and no name is in two groups', async () => {
    for (const group of COMMAND_GROUPS) {
      const program = new Command();
      await group.register(program);
      assert.deepEqual(namesOf(program), [...group.names].sort(), `group ${group.names.join(', ')}`);
    }
    assert.equal(new Set(ALL_NAMES).size, ALL_NAMES.length, 'a name listed in two groups');
  });

  it('a known command (or alias) builds its own group only, and the group is whole', async () => {
    for (const [word, group] of [
      ['copy', ['copy', 'cp']],
      ['cp', ['copy', 'cp']],
      ['tag', ['tags', 'catalog', 'manifest', 'digest', 'config', 'blob', 'referrers', 'tag', 'delete']],
      ['sync', ['sync', 'status', 'vet']],
      ['verify', ['generate-key-pair', 'sign', 'verify', 'webhook']],
    ] as const) {
      const program = await buildProgram(['node', 'airlock', '--quiet', word, 'x', 'y']);
      assert.deepEqual(namesOf(program), [...group].sort(), word);
    }
  });

  it('no command, help or an unknown word builds every group', async () => {
    for (const argv of [[], ['--help'], ['help', 'copy'], ['copt', 'a', 'b'], ['-v']]) {
      const program = await buildProgram(['node', 'airlock', ...argv]);
      assert.deepEqual(namesOf(program), ALL_NAMES, argv.join(' '));
    }
  });

  it('every named group is registered once, and a command line names its group (the code cache key)', () => {
    assert.deepEqual(
      COMMAND_GROUPS.map((group) => group.names),
      Object.values(COMMAND_NAMES),
    );
    assert.equal(requestedGroup(['node', 'airlock', '--quiet', 'cp', 'a', 'b']), 'copy');
    assert.equal(requestedGroup(['node', 'airlock', 'status']), 'sync');
    for (const argv of [[], ['--help'], ['help', 'copy'], ['copt']])
      assert.equal(requestedGroup(['node', 'airlock', ...argv]), undefined, argv.join(' '));
  });

  it('the requested command is the first word that is not an option', () => {
    assert.equal(requestedCommand(['node', 'airlock', '--quiet', 'copy', 'a']), 'copy');
    assert.equal(requestedCommand(['node', 'airlock', '--version']), undefined);
  });

  // Through the built CLI: the full help and commander's suggestion need every group.
  it('airlock --help lists every command; a misspelt one gets a suggestion and exit code 2', () => {
    const cli = fileURLToPath(new URL('../../bin/airlock.js', import.meta.url));
    const help = spawnSync(process.execPath, [cli, '--help'], { encoding: 'utf8' });
    assert.equal(help.status, 0, help.stderr);
    for (const name of ['serve', 'copy|cp', 'push', 'tree', 'repo', 'certs', 'sign', 'sync', 'vet'])
      assert.match(help.stdout, new RegExp(`^  ${name.replace('|', '\\|')}\\b`, 'm'), name);
    const wrong = spawnSync(process.execPath, [cli, 'copt', 'a', 'b'], { encoding: 'utf8' });
    assert.equal(wrong.status, 2);
    assert.match(wrong.stderr, /unknown command 'copt'/);
    assert.match(wrong.stderr, /Did you mean copy\?/);
  });
});
