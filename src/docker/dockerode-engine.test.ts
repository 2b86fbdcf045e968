import fsp from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EngineRequestError, EngineUnavailableError, UsageError } from '../errors/errors.ts';
import {
  DockerodeEngine,
  formatEndpoint,
  formatSince,
  JsonLineSplitter,
  parseDockerHost,
  parseEventLine,
  specFromInspect,
  createBodyFromSpec,
  tlsFromEnvironment,
} from './dockerode-engine.ts';
import type { EngineEvent } from './engine.ts';
import { ENGINE_DEFAULTS } from './runtime.ts';

describe('parseDockerHost', () => {
  it('reads unix sockets, named pipes and tcp', () => {
    expect(parseDockerHost('unix:///var/run/docker.sock')).toEqual({ kind: 'unix', path: '/var/run/docker.sock' });
    expect(parseDockerHost('unix:///run/user/1000/docker.sock')).toEqual({ kind: 'unix', path: '/run/user/1000/docker.sock' });
    expect(parseDockerHost('unix://')).toEqual({ kind: 'unix', path: '/var/run/docker.sock' });
    expect(parseDockerHost('npipe:////./pipe/docker_engine', 'win32')).toEqual({ kind: 'npipe', path: '\\\\.\\pipe\\docker_engine' });
    expect(parseDockerHost('npipe://\\\\.\\pipe\\dockerDesktopEngine', 'win32')).toEqual({ kind: 'npipe', path: '\\\\.\\pipe\\dockerDesktopEngine' });
    expect(parseDockerHost('npipe://', 'win32')).toEqual({ kind: 'npipe', path: '\\\\.\\pipe\\docker_engine' });
    expect(parseDockerHost('tcp://10.0.0.5:2376')).toEqual({ kind: 'tcp', host: '10.0.0.5', port: 2376 });
    expect(parseDockerHost('tcp://docker.example:2375/')).toEqual({ kind: 'tcp', host: 'docker.example', port: 2375 });
    expect(parseDockerHost('tcp://docker.example')).toEqual({ kind: 'tcp', host: 'docker.example', port: 2375 });
    expect(parseDockerHost('TCP://[::1]:2376')).toEqual({ kind: 'tcp', host: '::1', port: 2376 });
    expect(parseDockerHost('localhost:2375')).toEqual({ kind: 'tcp', host: 'localhost', port: 2375 });
    expect(parseDockerHost('  unix:///x.sock  ')).toEqual({ kind: 'unix', path: '/x.sock' });
  });

  it('falls back to DOCKER_HOST, then to the platform default', () => {
    expect(parseDockerHost(undefined, 'linux', { DOCKER_HOST: 'tcp://h:1234' })).toEqual({ kind: 'tcp', host: 'h', port: 1234 });
    expect(parseDockerHost(undefined, 'linux', {})).toEqual({ kind: 'unix', path: '/var/run/docker.sock' });
    expect(parseDockerHost(undefined, 'linux', { DOCKER_HOST: '' })).toEqual({ kind: 'unix', path: '/var/run/docker.sock' });
    expect(parseDockerHost(undefined, 'win32', {})).toEqual({ kind: 'npipe', path: '\\\\.\\pipe\\docker_engine' });
    expect(parseDockerHost(undefined, 'darwin', {})).toEqual({ kind: 'unix', path: '/var/run/docker.sock' });
    // An explicit value wins over DOCKER_HOST.
    expect(parseDockerHost('unix:///a.sock', 'linux', { DOCKER_HOST: 'tcp://h:1' })).toEqual({ kind: 'unix', path: '/a.sock' });
  });

  it('refuses malformed values with a UsageError that names the accepted forms', () => {
    const bad = [
      '',
      '   ',
      'unix://relative.sock',
      'npipe://docker_engine',
      'ssh://user@host',
      'fd://',
      'http://host:2375',
      'tcp://',
      'tcp://:2375',
      'tcp://host:',
      'tcp://host:99999',
      'tcp://host:0',
      'tcp://host:abc',
      'tcp://host:2375/path',
      'tcp://user:pw@host:2375',
      'tcp://host name:2375',
      'localhost',
      '/var/run/docker.sock',
    ];
    for (const value of bad) {
      expect(() => parseDockerHost(value), value).toThrow(UsageError);
    }
    expect(() => parseDockerHost('ssh://h')).toThrow(/unix:\/\/\/path\/docker\.sock/);
    expect(() => parseDockerHost(undefined, 'linux', { DOCKER_HOST: 'bogus://x' })).toThrow(/DOCKER_HOST/);
  });

  it('takes TLS from the environment as the docker CLI does', () => {
    expect(tlsFromEnvironment({})).toBeUndefined();
    expect(tlsFromEnvironment({ DOCKER_CERT_PATH: '/certs' })).toBeUndefined();
    expect(tlsFromEnvironment({ DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: '/certs' })).toEqual({
      ca: '/certs/ca.pem',
      cert: '/certs/cert.pem',
      key: '/certs/key.pem',
    });
    expect(tlsFromEnvironment({ DOCKER_TLS_VERIFY: '1' })?.ca).toBe(path.join(os.homedir(), '.docker', 'ca.pem'));
  });

  it('formats endpoints back', () => {
    for (const value of ['unix:///var/run/docker.sock', 'npipe:////./pipe/docker_engine', 'tcp://h:2376', 'tcp://[::1]:2375']) {
      expect(formatEndpoint(parseDockerHost(value, 'win32'))).toBe(value);
    }
  });
});

describe('the event stream parser', () => {
  const lines = [
    '{"status":"start","id":"abc","from":"busybox","Type":"container","Action":"start","Actor":{"ID":"abc","Attributes":{"image":"busybox","name":"web","note":"ünïcödé ✓"}},"scope":"local","time":1795340298,"timeNano":1795340298984186123}',
    '{"Type":"volume","Action":"create","Actor":{"ID":"data","Attributes":{"driver":"local"}},"scope":"local","time":1795340299,"timeNano":1795340299000000001}',
    '{"Type":"image","Action":"delete","Actor":{"ID":"sha256:ff","Attributes":null},"time":1795340300,"timeNano":1795340300999999999}',
  ];
  const stream = Buffer.from(lines.map((l) => `${l}\n`).join(''));

  const parseAll = (chunks: Buffer[]): EngineEvent[] => {
    const splitter = new JsonLineSplitter();
    const out: string[] = [];
    for (const c of chunks) out.push(...splitter.push(c));
    out.push(...splitter.end());
    return out.map((l) => parseEventLine(l)!);
  };

  it('keeps nanosecond times exact and maps the fields', () => {
    const [start, vol, img] = parseAll([stream]);
    expect(start).toEqual({
      type: 'container',
      action: 'start',
      id: 'abc',
      attributes: { image: 'busybox', name: 'web', note: 'ünïcödé ✓' },
      timeNano: 1795340298984186123n,
    });
    expect(vol!.timeNano).toBe(1795340299000000001n);
    expect(img).toEqual({ type: 'image', action: 'delete', id: 'sha256:ff', attributes: {}, timeNano: 1795340300999999999n });
  });

  it('gives the same events however the bytes are split, even inside a UTF-8 character', () => {
    const whole = parseAll([stream]);
    for (let size = 1; size <= 64; size++) {
      const chunks: Buffer[] = [];
      for (let i = 0; i < stream.length; i += size) chunks.push(stream.subarray(i, i + size));
      expect(parseAll(chunks)).toEqual(whole);
    }
    // Every two-way cut.
    for (let cut = 0; cut <= stream.length; cut++) {
      expect(parseAll([stream.subarray(0, cut), stream.subarray(cut)])).toEqual(whole);
    }
  });

  it('takes a last line without a newline, skips blank lines, CRLF and junk', () => {
    const splitter = new JsonLineSplitter();
    expect(splitter.push(`\n\r\n${lines[1]}\r\n\n`)).toEqual([lines[1]]);
    expect(splitter.push(lines[2]!)).toEqual([]);
    expect(splitter.end()).toEqual([lines[2]]);
    expect(parseEventLine('not json')).toBeUndefined();
    expect(parseEventLine('{"Type":"builder","Action":"x","Actor":{"ID":"1"}}')).toBeUndefined();
    expect(parseEventLine('[]')).toBeUndefined();
    expect(parseEventLine('{"Type":"network","Action":"connect","Actor":{"ID":"n1","Attributes":{"container":"c"}},"time":7}')).toEqual({
      type: 'network',
      action: 'connect',
      id: 'n1',
      attributes: { container: 'c' },
      timeNano: 7_000_000_000n,
    });
  });

  it('formats `since` as the engine parses it', () => {
    expect(formatSince(1700000000)).toBe('1700000000');
    expect(formatSince(1700000000.5)).toBe('1700000000.500000000');
    expect(formatSince(1700000000.9999999999)).toBe('1700000001');
  });
});

describe('spec mapping', () => {
  it('reads an inspect answer and writes a create body', () => {
    const raw = {
      Id: 'f'.repeat(64),
      Name: '/web',
      Image: 'sha256:1',
      Created: '2024-05-01T10:00:00.123456789Z',
      State: { Status: 'running' },
      Config: {
        Hostname: 'web',
        User: 'app',
        Env: ['A=1'],
        Cmd: ['serve'],
        Entrypoint: null,
        Image: 'nginx:1',
        WorkingDir: '/srv',
        Labels: { x: 'y' },
        ExposedPorts: { '80/tcp': {} },
        Healthcheck: { Test: ['CMD', 'true'], Interval: 1e9 },
        Tty: true,
        StopTimeout: null,
      },
      HostConfig: {
        NetworkMode: 'appnet',
        PortBindings: { '80/tcp': [{ HostIp: '', HostPort: '8080' }] },
        RestartPolicy: { Name: 'always', MaximumRetryCount: 0 },
        Links: ['/db:/web/database'],
        CapAdd: ['net_admin'],
        CapDrop: null,
        Devices: [{ PathOnHost: '/dev/fuse', PathInContainer: '/dev/fuse', CgroupPermissions: 'rwm' }],
        Init: false,
        ShmSize: 67108864,
        IpcMode: 'private',
        Ulimits: [{ Name: 'nofile', Soft: 1024, Hard: 4096 }],
        Memory: 268435456,
        MemorySwap: 536870912,
        PidsLimit: null,
      },
      Mounts: [
        { Type: 'bind', Source: '/etc/app', Destination: '/etc/app', RW: false },
        { Type: 'volume', Name: 'data', Source: '/var/lib/docker/volumes/data/_data', Destination: '/data', RW: true },
        { Type: 'npipe', Source: '\\\\.\\pipe\\x', Destination: '\\\\.\\pipe\\x', RW: true },
      ],
      NetworkSettings: { Networks: { appnet: { Aliases: ['ffffffffffff', 'web', 'www'] }, other: { Aliases: null } } },
    };
    const spec = specFromInspect(raw);
    expect(spec).toEqual({
      name: 'web',
      image: 'nginx:1',
      env: ['A=1'],
      cmd: ['serve'],
      entrypoint: null,
      workingDir: '/srv',
      user: 'app',
      hostname: 'web',
      labels: { x: 'y' },
      exposedPorts: ['80/tcp'],
      portBindings: [{ containerPort: '80/tcp', hostIp: '', hostPort: '8080' }],
      mounts: [
        { type: 'volume', name: 'data', source: '/var/lib/docker/volumes/data/_data', destination: '/data', readOnly: false },
        { type: 'bind', source: '/etc/app', destination: '/etc/app', readOnly: true },
      ],
      restartPolicy: { name: 'always', maximumRetryCount: 0 },
      networkMode: 'appnet',
      networks: [
        { name: 'appnet', aliases: ['web', 'www'] },
        { name: 'other', aliases: [] },
      ],
      links: ['db:database'],
      stopSignal: null,
      healthcheck: { test: ['CMD', 'true'], intervalNs: 1e9, timeoutNs: 0, retries: 0, startPeriodNs: 0 },
      runtime: {
        ...ENGINE_DEFAULTS,
        capAdd: ['CAP_NET_ADMIN'],
        devices: [{ pathOnHost: '/dev/fuse', pathInContainer: '/dev/fuse', cgroupPermissions: 'rwm' }],
        init: false,
        tty: true,
        shmSizeBytes: 67108864,
        ipcMode: 'private',
        ulimits: [{ name: 'nofile', soft: 1024, hard: 4096 }],
        resources: { ...ENGINE_DEFAULTS.resources, memoryBytes: 268435456, memorySwapBytes: 536870912 },
      },
    });
    const body = createBodyFromSpec(spec);
    expect(body).toMatchObject({
      Image: 'nginx:1',
      Cmd: ['serve'],
      ExposedPorts: { '80/tcp': {} },
      HostConfig: {
        Mounts: [
          { Type: 'volume', Source: 'data', Target: '/data', ReadOnly: false },
          { Type: 'bind', Source: '/etc/app', Target: '/etc/app', ReadOnly: true },
        ],
        PortBindings: { '80/tcp': [{ HostIp: '', HostPort: '8080' }] },
        RestartPolicy: { Name: 'always', MaximumRetryCount: 0 },
        NetworkMode: 'appnet',
        Links: ['db:database'],
        CapAdd: ['CAP_NET_ADMIN'],
        Devices: [{ PathOnHost: '/dev/fuse', PathInContainer: '/dev/fuse', CgroupPermissions: 'rwm' }],
        Init: false,
        ShmSize: 67108864,
        IpcMode: 'private',
        Ulimits: [{ Name: 'nofile', Soft: 1024, Hard: 4096 }],
        Memory: 268435456,
        MemorySwap: 536870912,
      },
      NetworkingConfig: { EndpointsConfig: { appnet: { Aliases: ['web', 'www'] } } },
      Tty: true,
    });
    expect(body).not.toHaveProperty('Entrypoint');
    // what is at the engine's default is left to the engine that creates it
    expect(Object.keys(body.HostConfig as object).sort()).toEqual(
      ['CapAdd', 'Devices', 'Init', 'IpcMode', 'Links', 'Memory', 'MemorySwap', 'Mounts', 'NetworkMode', 'PortBindings', 'RestartPolicy', 'ShmSize', 'Ulimits'],
    );
    expect(body).not.toHaveProperty('StopTimeout');
    expect(body).not.toHaveProperty('OpenStdin');
    const plain = createBodyFromSpec({ ...spec, links: [], runtime: ENGINE_DEFAULTS });
    expect(Object.keys(plain.HostConfig as object).sort()).toEqual(['Mounts', 'NetworkMode', 'PortBindings', 'RestartPolicy']);
  });
});

/** A stand-in engine on a unix socket, to see how DockerodeEngine handles what a real one rarely does. */
const WIN_MOUNTPOINT = 'C:\\ProgramData\\docker\\volumes\\winvol\\_data';

describe('DockerodeEngine against a scripted server', () => {
  let dir: string;
  let server: http.Server;
  let socket: string;
  let onEvents: (req: http.IncomingMessage, res: http.ServerResponse) => void = () => undefined;
  const event = (n: number) =>
    `{"Type":"container","Action":"start","Actor":{"ID":"c${n}","Attributes":{"name":"n${n}"}},"time":1700000000,"timeNano":170000000000000000${n}}\n`;

  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lb-dockerode-'));
    socket = path.join(dir, 'engine.sock');
    server = http.createServer((req, res) => {
      const url = req.url ?? '';
      if (url.startsWith('/events')) return onEvents(req, res);
      const json = (status: number, body: unknown) => {
        res.writeHead(status, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      if (url === '/containers/missing/json') return json(404, { message: 'No such container: missing' });
      if (url.startsWith('/containers/up/start')) {
        res.writeHead(304);
        return res.end();
      }
      if (url.startsWith('/containers/idle/pause')) return json(409, { message: 'Container idle is not running' });
      if (url.startsWith('/volumes/busy')) return json(500, { message: 'remove busy: volume is in use - [abc]' });
      if (url === '/volumes/winvol') return json(200, { Name: 'winvol', Driver: 'local', Mountpoint: WIN_MOUNTPOINT, Labels: null, CreatedAt: '2024-05-01T10:00:00Z' });
      if (url === '/_ping') return req.socket.destroy(); // hang up without an answer
      json(500, { message: `unexpected ${req.method} ${url}` });
    });
    await new Promise<void>((resolve) => server.listen(socket, resolve));
    expect((server.address() as AddressInfo | string)).toBe(socket);
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await fsp.rm(dir, { recursive: true, force: true });
  });

  const engine = () => new DockerodeEngine({ endpoint: { kind: 'unix', path: socket } });

  it('maps answers: 404 on inspect, 304 on start, engine messages on errors', async () => {
    const e = engine();
    expect(await e.inspectContainer('missing')).toBeUndefined();
    await e.start('up');
    await expect(e.pause('idle')).rejects.toThrow(EngineRequestError);
    await expect(e.pause('idle')).rejects.toThrow(/Container idle is not running/);
    await expect(e.removeVolume('busy')).rejects.toThrow(/volume is in use/);
    await expect(e.ping()).rejects.toThrow(EngineUnavailableError);
  });

  it('keeps a Windows engine\'s volume mountpoint as the plain path it reports', async () => {
    const v = await engine().inspectVolume('winvol');
    expect(v).toMatchObject({ name: 'winvol', driver: 'local', mountpoint: WIN_MOUNTPOINT, labels: {}, created: '2024-05-01T10:00:00.000Z' });
    // What backup and restore then use as a directory, with the platform's own path functions.
    expect(path.win32.isAbsolute(v!.mountpoint)).toBe(true);
    expect(path.win32.join(v!.mountpoint, 'db', 'pg_wal')).toBe('C:\\ProgramData\\docker\\volumes\\winvol\\_data\\db\\pg_wal');
  });

  it('reports a missing socket or a refused connection as EngineUnavailableError', async () => {
    const gone = new DockerodeEngine({ endpoint: { kind: 'unix', path: path.join(dir, 'absent.sock') } });
    await expect(gone.ping()).rejects.toThrow(EngineUnavailableError);
    await expect(gone.listContainers()).rejects.toThrow(/absent\.sock.*unavailable/);
    const closed = new DockerodeEngine({ endpoint: { kind: 'tcp', host: '127.0.0.1', port: 1 } });
    await expect(closed.info()).rejects.toThrow(EngineUnavailableError);
    const iterator = gone.events({ signal: new AbortController().signal })[Symbol.asyncIterator]();
    await expect(iterator.next()).rejects.toThrow(EngineUnavailableError);
  });

  it('reads events split anywhere and ends with EngineUnavailableError when the stream ends', async () => {
    const body = Buffer.from(event(1) + event(2) + event(3));
    let query = '';
    onEvents = (req, res) => {
      query = req.url ?? '';
      res.writeHead(200, { 'Content-Type': 'application/json' });
      let i = 0;
      const step = () => {
        if (i >= body.length) return res.end();
        res.write(body.subarray(i, i + 7));
        i += 7;
        setImmediate(step);
      };
      step();
    };
    const seen: EngineEvent[] = [];
    const iterate = async () => {
      for await (const e of engine().events({ since: 1700000000, signal: new AbortController().signal })) seen.push(e);
    };
    await expect(iterate()).rejects.toThrow(EngineUnavailableError);
    expect(seen.map((e) => [e.id, e.timeNano])).toEqual([
      ['c1', 1700000000000000001n],
      ['c2', 1700000000000000002n],
      ['c3', 1700000000000000003n],
    ]);
    expect(query).toContain('since=1700000000');
  });

  it('ends with EngineUnavailableError when the connection drops mid-stream', async () => {
    onEvents = (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.write(event(1) + event(2).slice(0, 20));
      setTimeout(() => res.socket?.destroy(), 20);
    };
    const seen: string[] = [];
    const iterate = async () => {
      for await (const e of engine().events({ signal: new AbortController().signal })) seen.push(e.id);
    };
    await expect(iterate()).rejects.toThrow(EngineUnavailableError);
    expect(seen).toEqual(['c1']);
  });

  it('stops cleanly when aborted, while waiting for the next event', async () => {
    onEvents = (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.write(event(1));
    };
    const ac = new AbortController();
    const seen: string[] = [];
    const done = (async () => {
      for await (const e of engine().events({ signal: ac.signal })) {
        seen.push(e.id);
        setTimeout(() => ac.abort(), 50);
      }
    })();
    await expect(done).resolves.toBeUndefined();
    expect(seen).toEqual(['c1']);
    // Aborted before it starts: nothing, no error.
    const pre = new AbortController();
    pre.abort();
    for await (const _ of engine().events({ signal: pre.signal })) throw new Error('unexpected event');
  });

  it('refuses an HTTP error on /events as EngineRequestError', async () => {
    onEvents = (_req, res) => {
      res.writeHead(400, { 'Content-Type': 'application/json' });
      res.end('{"message":"invalid filter"}');
    };
    const iterator = engine().events({ signal: new AbortController().signal })[Symbol.asyncIterator]();
    await expect(iterator.next()).rejects.toThrow(/invalid filter/);
  });
});
