import { describe, expect, it } from 'vitest';
import { type EnginePlatform, normalizeArch, portability, windowsBuild } from './portability.ts';

const linux: EnginePlatform = { os: 'linux', architecture: 'amd64', osVersion: '6.1.0-18-amd64', isolation: null };
const server2022 = (isolation: 'process' | 'hyperv'): EnginePlatform => ({ os: 'windows', architecture: 'amd64', osVersion: '10.0.20348', isolation });
const image = (os: string, architecture: string, osVersion: string | null = null) => ({ os, architecture, osVersion });

describe('portability', () => {
  it('runs an image of the engine\'s own OS and architecture, whatever the spelling', () => {
    expect(portability(image('linux', 'amd64'), linux)).toEqual({ blockers: [], warnings: [] });
    expect(portability(image('Linux', 'x86_64'), linux)).toEqual({ blockers: [], warnings: [] });
    expect(portability(image('linux', 'arm64'), { ...linux, architecture: 'aarch64' })).toEqual({ blockers: [], warnings: [] });
    expect(normalizeArch('armv7l')).toBe('arm');
  });

  it('blocks another OS or architecture, naming both', () => {
    expect(portability(image('linux', 'arm64'), linux).blockers).toEqual(['the image is for linux/arm64, and this engine is linux/amd64']);
    expect(portability(image('windows', 'amd64', '10.0.20348.1'), linux).blockers).toEqual(['the image is for windows, and this engine runs linux containers']);
    expect(portability(image('linux', 'amd64'), server2022('process')).blockers).toEqual(['the image is for linux, and this engine runs windows containers']);
    expect(portability(image('linux', 's390x'), linux).blockers).toHaveLength(1);
  });

  it('warns about a 32-bit image on its 64-bit family, and about missing platform data', () => {
    expect(portability(image('linux', '386'), linux)).toMatchObject({ blockers: [], warnings: [expect.stringMatching(/386.*32-bit/)] });
    expect(portability(image('linux', 'arm'), { ...linux, architecture: 'arm64' }).blockers).toEqual([]);
    expect(portability(image('linux', 'amd64'), { ...linux, architecture: 'arm64' }).blockers).toHaveLength(1);
    expect(portability(image('', ''), linux)).toMatchObject({ blockers: [], warnings: [expect.stringMatching(/no OS/), expect.stringMatching(/no architecture/)] });
  });

  it('Windows, process isolation: the build must match; the revision may differ', () => {
    expect(portability(image('windows', 'amd64', '10.0.20348.2113'), server2022('process'))).toEqual({ blockers: [], warnings: [] });
    expect(portability(image('windows', 'amd64', '10.0.17763.5329'), server2022('process')).blockers).toEqual([
      "process isolation needs the image's Windows build (17763) to match the host's (20348); use Hyper-V isolation (dockerd --exec-opt isolation=hyperv) or an image for build 20348",
    ]);
  });

  it('Windows, Hyper-V isolation: an older build runs, with a warning', () => {
    expect(portability(image('windows', 'amd64', '10.0.17763.5329'), server2022('hyperv'))).toEqual({
      blockers: [],
      warnings: ["the image is for Windows build 17763, older than this host's 20348: it runs under Hyper-V isolation only"],
    });
  });

  it('Windows: a newer image build than the host never runs, in either isolation', () => {
    for (const isolation of ['process', 'hyperv'] as const) {
      expect(portability(image('windows', 'amd64', '10.0.26100.1'), server2022(isolation)).blockers).toEqual([
        "the image needs Windows build 26100, newer than this host's 20348; no isolation mode runs a newer build",
      ]);
    }
  });

  it('Windows: an image or host without a build is a warning, not a guess', () => {
    expect(portability(image('windows', 'amd64', null), server2022('process'))).toMatchObject({ blockers: [], warnings: [expect.stringMatching(/no Windows build/)] });
    expect(portability(image('windows', 'amd64', '10.0.20348.1'), { ...server2022('process'), osVersion: '' }).blockers).toEqual([]);
    expect(windowsBuild('10.0.17763.5329')).toBe(17763);
    expect(windowsBuild('10.0')).toBeUndefined();
  });
});
