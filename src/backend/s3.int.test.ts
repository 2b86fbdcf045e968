/**
 * The conformance suite against a real S3 store: Ceph's RADOS Gateway, started
 * once for this file (test/lib/ceph-rgw.ts), a fresh bucket for each case.
 */
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe } from 'vitest';
import { cephUnavailableReason, createBucket, type Rgw, startRgw } from '../../test/lib/ceph-rgw.ts';
import { S3Backend, type S3BackendOptions } from './s3.ts';
import { backendConformance } from './testing/conformance.ts';

const unavailable = cephUnavailableReason();
if (unavailable) console.warn(`skipping the S3 backend's tests on Ceph RGW: ${unavailable}`);

describe.skipIf(unavailable !== undefined)('S3 backend on a real Ceph RADOS Gateway', () => {
  let rgw: Rgw;
  beforeAll(async () => {
    const started = Date.now();
    rgw = await startRgw(await fsp.mkdtemp(path.join(os.tmpdir(), 'lifeboat-rgw-')));
    console.log(`Ceph RGW up at ${rgw.endpoint} in ${Date.now() - started} ms`);
  });
  afterAll(async () => {
    await rgw?.stop();
  });

  backendConformance('s3 (Ceph RGW)', async () => {
    const options: S3BackendOptions = {
      endpoint: rgw.endpoint,
      bucket: `lb-${crypto.randomBytes(6).toString('hex')}`,
      prefix: 'hosts/a',
      region: 'lifeboat',
      credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey },
      forcePathStyle: true,
    };
    await createBucket(rgw, options.bucket);
    // the bucket goes with the gateway in afterAll
    return { backend: new S3Backend(options), reopen: () => new S3Backend(options), cleanup: async () => {} };
  });
});
