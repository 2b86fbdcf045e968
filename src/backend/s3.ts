import crypto from 'node:crypto';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type PutObjectCommandInput,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { FileExistsError, FileNotFoundError, NoSpaceError, ObjectStoreError } from '../errors/errors.ts';
import { type Backend, type ByteRange, checkName, checkRange, type FileInfo, type FileKind } from './backend.ts';

export interface S3Credentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
}

export interface S3BackendOptions {
  /** e.g. https://s3.example.net; omitted: AWS's own endpoint for the region. */
  readonly endpoint?: string;
  readonly bucket: string;
  /** Key prefix under which the repository lives; '' for the bucket's top. */
  readonly prefix?: string;
  /** Any name for stores that ignore it (Ceph, MinIO); default us-east-1. */
  readonly region?: string;
  /** Omitted: the SDK's default chain (AWS_ACCESS_KEY_ID and friends, profiles). */
  readonly credentials?: S3Credentials;
  /** Path-style URLs (endpoint/bucket/key), which most self-hosted stores need. */
  readonly forcePathStyle?: boolean;
  /** Requests in flight at once; default 16. */
  readonly concurrency?: number;
  /**
   * Object lock: every object is written with a retention of this many days
   * in this mode (the bucket must have been created with object lock), so
   * that no one, the writer included, can delete or overwrite its version
   * before then (COMPLIANCE; GOVERNANCE yields to a bypass permission).
   */
  readonly lock?: { readonly mode: 'COMPLIANCE' | 'GOVERNANCE'; readonly days: number };
  /**
   * How long a connection may take to open, and a request's socket may stay
   * silent, before the request fails (ms); default 60 s. A gateway that
   * accepts and then says nothing must not hang a push forever.
   */
  readonly timeoutMs?: number;
}

/** What a bodiless answer (HEAD's) stands for. */
const STATUS_CODES: Readonly<Record<number, string>> = { 400: 'BadRequest', 403: 'AccessDenied', 409: 'Conflict', 500: 'InternalError', 503: 'SlowDown' };

// S3's error codes for a full store: RGW's quota (403 QuotaExceeded) and its full cluster (507)
const NO_SPACE_CODES: ReadonlySet<string> = new Set(['QuotaExceeded', 'InsufficientCapacity']);

/**
 * A repository's files as objects `<prefix>/<kind>/<name>` in an S3 bucket.
 * Each file is one PutObject with `If-None-Match: *`: the store creates it
 * whole or refuses it (412) when the key exists, which gives write-once
 * semantics without locks, also between hosts, and never overwrites, so a
 * bucket with object lock works. Multipart uploads are not used for writes
 * because stores ignore If-None-Match on CompleteMultipartUpload (Ceph
 * Pacific does), which would make them overwrites.
 */
export class S3Backend implements Backend {
  readonly location: string;
  readonly #client: S3Client;
  readonly #bucket: string;
  readonly #prefix: string;
  readonly #limit: Limiter;
  readonly #lock: S3BackendOptions['lock'];
  readonly #timeoutMs: number;

  constructor(options: S3BackendOptions) {
    const concurrency = options.concurrency ?? 16;
    this.#bucket = options.bucket;
    const prefix = (options.prefix ?? '').replace(/^\/+|\/+$/g, '');
    this.#prefix = prefix ? `${prefix}/` : '';
    this.location = `s3://${this.#bucket}/${this.#prefix}${options.endpoint ? ` at ${options.endpoint}` : ''}`;
    this.#limit = new Limiter(concurrency);
    this.#lock = options.lock;
    this.#timeoutMs = options.timeoutMs ?? 60_000;
    this.#client = new S3Client({
      region: options.region ?? 'us-east-1',
      forcePathStyle: options.forcePathStyle ?? false,
      ...(options.endpoint !== undefined && { endpoint: options.endpoint }),
      ...(options.credentials !== undefined && { credentials: options.credentials }),
      // the SDK's default checksums use aws-chunked trailers, which Ceph and other non-AWS stores reject
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: {
        connectionTimeout: this.#timeoutMs,
        socketTimeout: this.#timeoutMs,
        httpAgent: { keepAlive: true, maxSockets: concurrency },
        httpsAgent: { keepAlive: true, maxSockets: concurrency },
      },
    });
  }

  #key(kind: FileKind, name: string): string {
    checkName(kind, name);
    return `${this.#prefix}${kind}/${name}`;
  }

  async *list(kind: FileKind): AsyncIterable<FileInfo> {
    const dir = `${this.#prefix}${kind}/`;
    let token: string | undefined;
    do {
      const page = await this.#send(`list ${kind} files`, () =>
        this.#client.send(new ListObjectsV2Command({ Bucket: this.#bucket, Prefix: dir, Delimiter: '/', ContinuationToken: token })),
      );
      for (const o of page.Contents ?? []) {
        const name = o.Key!.slice(dir.length);
        // what someone else put under the prefix that this backend could not read back by name
        if (validName(kind, name)) yield { name, size: o.Size ?? 0 };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async stat(kind: FileKind, name: string): Promise<FileInfo | undefined> {
    const Key = this.#key(kind, name);
    try {
      const head = await this.#send(`${kind} file ${name}`, () => this.#client.send(new HeadObjectCommand({ Bucket: this.#bucket, Key })));
      return { name, size: head.ContentLength ?? 0 };
    } catch (err) {
      if (err instanceof FileNotFoundError) return undefined;
      throw err;
    }
  }

  async read(kind: FileKind, name: string, range?: ByteRange): Promise<Buffer> {
    const Key = this.#key(kind, name);
    if (range) checkRange(range);
    // an empty range has no HTTP form (bytes=N-(N-1)); the answer is still "nothing", or that there is no file
    if (range?.length === 0) {
      if (!(await this.stat(kind, name))) throw new FileNotFoundError(`no ${kind} file ${name} in ${this.location}`);
      return Buffer.alloc(0);
    }
    const Range = range && `bytes=${range.offset}-${range.offset + range.length - 1}`;
    try {
      return await this.#send(`${kind} file ${name}`, async () => {
        const res = await this.#client.send(new GetObjectCommand({ Bucket: this.#bucket, Key, Range }));
        const bytes = await res.Body!.transformToByteArray();
        const body = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        // a store may answer a range with the whole object (200, no Content-Range): take the range ourselves
        return range && !res.ContentRange ? Buffer.from(body.subarray(range.offset, range.offset + range.length)) : body;
      }, 416);
    } catch (err) {
      // 416: the range starts at or after the end (also any range of an empty file), and the file exists
      if (range && err instanceof S3ServiceException && err.$metadata.httpStatusCode === 416) return Buffer.alloc(0);
      throw err;
    }
  }

  async writeOnce(kind: FileKind, name: string, data: Uint8Array): Promise<void> {
    const Key = this.#key(kind, name);
    const what = `${kind} file ${name}`;
    try {
      await this.#send(what, () =>
        this.#client.send(new PutObjectCommand({ Bucket: this.#bucket, Key, Body: data, ContentLength: data.byteLength, IfNoneMatch: '*', ...this.#retention(data) })), 412);
    } catch (err) {
      if (!(err instanceof S3ServiceException) || err.$metadata.httpStatusCode !== 412) throw err;
      // a retried PUT whose first attempt was stored but whose answer was lost meets its own object: that is success
      if ((err.$metadata.attempts ?? 1) > 1 && (await this.#etag(Key)) === `"${crypto.createHash('md5').update(data).digest('hex')}"`) return;
      throw new FileExistsError(`${what} exists in ${this.location}`, { cause: err });
    }
  }

  /** A retention for the object (stores require Content-MD5 with one). */
  #retention(data: Uint8Array): Partial<PutObjectCommandInput> {
    if (!this.#lock) return {};
    return {
      ObjectLockMode: this.#lock.mode,
      ObjectLockRetainUntilDate: new Date(Date.now() + this.#lock.days * 86_400_000),
      ContentMD5: crypto.createHash('md5').update(data).digest('base64'),
    };
  }

  async delete(kind: FileKind, name: string): Promise<void> {
    const Key = this.#key(kind, name);
    await this.#send(`${kind} file ${name}`, () => this.#client.send(new DeleteObjectCommand({ Bucket: this.#bucket, Key })));
  }

  async #etag(Key: string): Promise<string | undefined> {
    return this.#send(Key, () => this.#client.send(new HeadObjectCommand({ Bucket: this.#bucket, Key }))).then(
      (h) => h.ETag,
      () => undefined,
    );
  }

  /**
   * Runs a request within the concurrency limit, with the store's errors as
   * the project's; those of an `expected` status come as they are, for the
   * caller to read.
   */
  async #send<T>(what: string, request: () => Promise<T>, expected?: number): Promise<T> {
    try {
      return await this.#limit.run(request);
    } catch (err) {
      if (!(err instanceof S3ServiceException)) throw this.#unreachable(what, err);
      if (err.$metadata.httpStatusCode === expected) throw err;
      // HEAD answers carry no body, so no code: the status is all there is
      if (err.name === 'NoSuchKey' || (err.name === 'NotFound' && err.$metadata.httpStatusCode === 404)) {
        throw new FileNotFoundError(`no ${what} in ${this.location}`, { cause: err });
      }
      if (NO_SPACE_CODES.has(err.name)) throw new NoSpaceError(`${this.location} has no room for ${what} (${err.name}): free some, raise the quota, or prune`, { cause: err });
      // RGW's error bodies carry no message (the SDK says "UnknownError"), and HEAD's no code either: the status says it
      const status = err.$metadata.httpStatusCode;
      const code = /^Unknown(Error)?$/.test(err.name) ? (STATUS_CODES[status ?? 0] ?? 'Unknown') : err.name;
      const detail = /^Unknown(Error)?$/.test(err.message) ? '' : `: ${err.message}`;
      const hint = status === 403 ? ": check the target's credentials and what the bucket's policy allows them" : '';
      throw new ObjectStoreError(`${what} in ${this.location}: ${code} (HTTP ${status})${detail}${hint}`, { cause: err });
    }
  }

  /** A request that got no answer: the store's address, silence or a broken connection, named as such. */
  #unreachable(what: string, err: unknown): unknown {
    const e = err as NodeJS.ErrnoException;
    if (e?.name === 'TimeoutError') return new ObjectStoreError(`${what} in ${this.location}: no answer within ${this.#timeoutMs / 1000} s`, { cause: err });
    if (typeof e?.code === 'string' && /^E[A-Z]+$/.test(e.code)) return new ObjectStoreError(`${what} in ${this.location}: cannot reach the store (${e.code})`, { cause: err });
    return err;
  }
}

function validName(kind: FileKind, name: string): boolean {
  try {
    checkName(kind, name);
    return true;
  } catch {
    return false;
  }
}

/** At most `max` calls at once; the rest wait their turn in order. */
class Limiter {
  readonly #max: number;
  #active = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(max: number) {
    if (!Number.isSafeInteger(max) || max < 1) throw new RangeError(`concurrency must be a whole number of at least 1, not ${max}`);
    this.#max = max;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#active >= this.#max) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    else this.#active++;
    try {
      return await fn();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#active--;
    }
  }
}
