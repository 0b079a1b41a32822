import { lstat, readdir, readFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { parseAllDocuments } from 'yaml';
import type { KubeObject } from '../kube/index.js';
import { mapLimit } from './concurrency.js';
import { KNV, SyncError, SyncErrors } from './errors.js';

/** One object as found in the source, with the file it came from (relative, "/"-separated). */
export interface SourceObject {
  readonly object: KubeObject;
  readonly path: string;
}

export interface ReadSourceOptions {
  /** Most files read. Default 10,000. */
  readonly maxFiles?: number;
  /** Largest single file. Default 16 MiB. */
  readonly maxFileBytes?: number;
}

const MANIFEST_FILE = /\.(ya?ml|json)$/i;
const LOCAL_CONFIG = 'config.kubernetes.io/local-config';

/** Every manifest file under `root` (dot-files and dot-folders skipped, symbolic links not followed). */
async function manifestFiles(root: string, options: ReadSourceOptions): Promise<string[]> {
  const maxFiles = options.maxFiles ?? 10_000;
  const found: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile() && MANIFEST_FILE.test(entry.name)) {
        found.push(path);
        if (found.length > maxFiles)
          throw new SyncError(KNV.SOURCE, `The source has more than ${maxFiles} manifest files`);
      }
    }
  };
  await walk(root);
  return found;
}

function describeDoc(path: string, index: number, count: number): string {
  return count > 1 ? `${path} (document ${index + 1})` : path;
}

/** Objects of one parsed document: itself, or the items of a kind "List". */
function objectsOf(value: unknown, where: string, errors: SyncError[]): KubeObject[] {
  if (value === null || value === undefined) return [];
  if (typeof value !== 'object' || Array.isArray(value)) {
    errors.push(new SyncError(KNV.OBJECT_PARSE, `${where}: the document is not a Kubernetes object (a map)`));
    return [];
  }
  const object = value as Record<string, unknown>;
  if (typeof object.kind === 'string' && object.kind.endsWith('List') && Array.isArray(object.items)) {
    return object.items.flatMap((item, i) => objectsOf(item, `${where} item ${i + 1}`, errors));
  }
  const missing = ['apiVersion', 'kind'].filter(
    (key) => typeof object[key] !== 'string' || object[key] === '',
  );
  if (missing.length > 0) {
    errors.push(new SyncError(KNV.OBJECT_PARSE, `${where}: the object has no ${missing.join(' and no ')}`));
    return [];
  }
  const metadata = object.metadata;
  if (
    metadata !== undefined &&
    (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata))
  ) {
    errors.push(new SyncError(KNV.OBJECT_PARSE, `${where}: metadata is not a map`));
    return [];
  }
  const result = { ...object, metadata: { ...(metadata as Record<string, unknown>) } } as KubeObject;
  if (result.metadata.annotations?.[LOCAL_CONFIG] === 'true') return [];
  return [result];
}

/** Parses one file's text (multi-document YAML, or JSON) into objects, collecting errors. */
export function parseManifestText(text: string, path: string, errors: SyncError[]): KubeObject[] {
  if (path.toLowerCase().endsWith('.json')) {
    try {
      return objectsOf(JSON.parse(text), path, errors);
    } catch (error) {
      errors.push(new SyncError(KNV.OBJECT_PARSE, `${path}: invalid JSON: ${(error as Error).message}`));
      return [];
    }
  }
  const docs = parseAllDocuments(text, { prettyErrors: false, uniqueKeys: true });
  const list = Array.isArray(docs) ? docs : [docs];
  const objects: KubeObject[] = [];
  list.forEach((doc, index) => {
    const where = describeDoc(path, index, list.length);
    if (doc.errors.length > 0) {
      const first = doc.errors[0]!;
      const offset = first.pos[0];
      const line =
        first.linePos?.[0]?.line ?? (offset >= 0 ? text.slice(0, offset).split('\n').length : undefined);
      errors.push(
        new SyncError(
          KNV.OBJECT_PARSE,
          `${where}: invalid YAML${line ? ` at line ${line}` : ''}: ${first.message.split('\n')[0] ?? ''}`,
        ),
      );
      return;
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (error) {
      // Too many aliases (a "billion laughs" document) and similar: refused, not expanded.
      errors.push(new SyncError(KNV.OBJECT_PARSE, `${where}: invalid YAML: ${(error as Error).message}`));
      return;
    }
    objects.push(...objectsOf(value, where, errors));
  });
  return objects;
}

/**
 * Reads every .yaml/.yml/.json file under `root` (multi-document YAML, kind List expanded, objects marked
 * config.kubernetes.io/local-config skipped). All parse errors are thrown together as SyncErrors.
 */
export async function readSource(root: string, options: ReadSourceOptions = {}): Promise<SourceObject[]> {
  const maxFileBytes = options.maxFileBytes ?? 16 * 1024 * 1024;
  const errors: SyncError[] = [];
  const objects: SourceObject[] = [];
  // Read 16 files at a time; parse in file order so errors and objects come out the same every time.
  const files = await manifestFiles(root, options);
  const texts = await mapLimit(files, 16, async (file) => {
    const info = await lstat(file);
    return info.size > maxFileBytes ? undefined : readFile(file, 'utf8');
  });
  files.forEach((file, index) => {
    const path = relative(root, file).split(sep).join('/');
    const text = texts[index];
    if (text === undefined) {
      errors.push(new SyncError(KNV.OBJECT_PARSE, `${path}: the file is larger than ${maxFileBytes} bytes`));
      return;
    }
    for (const object of parseManifestText(text, path, errors)) objects.push({ object, path });
  });
  if (errors.length > 0) throw new SyncErrors(errors);
  return objects;
}
