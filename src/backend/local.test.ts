import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { LocalBackend } from './local.ts';
import { backendConformance } from './testing/conformance.ts';

backendConformance('local', async () => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lifeboat-backend-'));
  return { backend: new LocalBackend(dir), reopen: () => new LocalBackend(dir), cleanup: () => fsp.rm(dir, { recursive: true, force: true }) };
});

describe('local backend, beyond the conformance suite', () => {
  it('keeps the layout of a repository directory', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lifeboat-backend-'));
    try {
      const b = new LocalBackend(dir);
      const pack = 'ab'.padEnd(64, '0');
      await b.writeOnce('pack', pack, Buffer.from('p'));
      await b.writeOnce('key', 'k.json', Buffer.from('k'));
      await b.writeOnce('config', 'config.json', Buffer.from('{}'));
      expect(fs.readFileSync(path.join(dir, 'packs', 'ab', pack), 'utf8')).toBe('p');
      expect(fs.readFileSync(path.join(dir, 'keys', 'k.json'), 'utf8')).toBe('k');
      expect(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')).toBe('{}');
      // what else lives at the top (the index) is no config file
      fs.writeFileSync(path.join(dir, 'index.db'), 'x');
      const configs = [];
      for await (const f of b.list('config')) configs.push(f.name);
      expect(configs).toEqual(['config.json']);
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });

  it('never reads through a symlink put where a file should be', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lifeboat-backend-'));
    try {
      const b = new LocalBackend(dir);
      fs.writeFileSync(path.join(dir, 'secret'), 'outside');
      fs.mkdirSync(path.join(dir, 'snapshots'));
      fs.symlinkSync(path.join(dir, 'secret'), path.join(dir, 'snapshots', 'link'));
      await expect(b.read('snapshot', 'link')).rejects.toMatchObject({ code: 'LB_ERR_FILE_NOT_FOUND' });
      const names = [];
      for await (const f of b.list('snapshot')) names.push(f.name);
      expect(names).toEqual([]);
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });

  it('leaves no file, and the name free, when the writer is killed mid-write', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lifeboat-backend-'));
    try {
      const name = 'cd'.padEnd(64, '1');
      // a real process writing a large pack, SIGKILLed once its temporary file has data
      const child = spawn(process.execPath, [path.join(import.meta.dirname, 'testing', 'slow-writer.ts'), dir, name], { stdio: ['ignore', 'pipe', 'inherit'] });
      const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => d.toString().includes('writing') && resolve());
        child.on('exit', () => reject(new Error('the writer ended before it wrote')));
      });
      const sub = path.join(dir, 'packs', 'cd');
      while (!fs.existsSync(sub) || !fs.readdirSync(sub).some((n) => n.includes('.tmp') && fs.statSync(path.join(sub, n)).size > 0)) await new Promise((r) => setImmediate(r));
      child.kill('SIGKILL');
      await exited;
      const b = new LocalBackend(dir);
      const names = [];
      for await (const f of b.list('pack')) names.push(f.name);
      expect(names).toEqual([]);
      expect(await b.stat('pack', name)).toBeUndefined();
      await b.writeOnce('pack', name, Buffer.from('whole'));
      expect((await b.read('pack', name)).toString()).toBe('whole');
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});
