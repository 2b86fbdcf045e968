import { FileExistsError, FileNotFoundError } from '../errors/errors.ts';
import { type Backend, type ByteRange, checkName, checkRange, type FileInfo, type FileKind } from './backend.ts';

/** The in-memory twin of the other backends: for tests, held to the same conformance suite. */
export class MemoryBackend implements Backend {
  readonly location = 'memory';
  readonly #files = new Map<FileKind, Map<string, Buffer>>();

  #of(kind: FileKind): Map<string, Buffer> {
    let files = this.#files.get(kind);
    if (!files) this.#files.set(kind, (files = new Map()));
    return files;
  }

  async *list(kind: FileKind): AsyncIterable<FileInfo> {
    // a copy: a file written or deleted while the caller iterates does not disturb it
    for (const [name, data] of [...this.#of(kind)]) yield { name, size: data.length };
  }

  async stat(kind: FileKind, name: string): Promise<FileInfo | undefined> {
    checkName(kind, name);
    const data = this.#of(kind).get(name);
    return data && { name, size: data.length };
  }

  async read(kind: FileKind, name: string, range?: ByteRange): Promise<Buffer> {
    checkName(kind, name);
    if (range) checkRange(range);
    const data = this.#of(kind).get(name);
    if (!data) throw new FileNotFoundError(`no ${kind} file ${name} in memory`);
    const start = Math.min(range?.offset ?? 0, data.length);
    const end = range ? Math.min(start + range.length, data.length) : data.length;
    return Buffer.from(data.subarray(start, end));
  }

  async writeOnce(kind: FileKind, name: string, data: Uint8Array): Promise<void> {
    checkName(kind, name);
    const files = this.#of(kind);
    if (files.has(name)) throw new FileExistsError(`${kind} file ${name} exists in memory`);
    files.set(name, Buffer.from(data));
  }

  async delete(kind: FileKind, name: string): Promise<void> {
    checkName(kind, name);
    this.#of(kind).delete(name);
  }
}
