/**
 * Can an image run on this engine? A pure function of the image's platform
 * and the engine's, so the rules are tested without either.
 *
 * - OS must match: Linux images on Linux engines, Windows on Windows.
 * - Architecture must match, except the 32-bit variant a 64-bit host can run
 *   (386 on amd64, arm on arm64), which is a warning. Emulation (qemu
 *   binfmt) is not assumed.
 * - Windows: an image whose build is newer than the host's never runs.
 *   Process isolation needs the same build (major.minor.build; the revision
 *   may differ); Hyper-V isolation runs older builds too, which is a warning.
 *   The container gets the engine's default isolation (the spec records none).
 */
export interface ImagePlatform {
  readonly os: string;
  readonly architecture: string;
  /** Windows images: the build they were made for, e.g. 10.0.17763.5329. */
  readonly osVersion: string | null;
}

export interface EnginePlatform {
  readonly os: string;
  readonly architecture: string;
  readonly osVersion: string;
  readonly isolation: 'process' | 'hyperv' | null;
}

export interface Verdict {
  readonly blockers: readonly string[];
  readonly warnings: readonly string[];
}

/** GOARCH names for the spellings uname and older images use. */
const ARCH_ALIASES: Readonly<Record<string, string>> = {
  x86_64: 'amd64',
  x86: '386',
  i386: '386',
  i686: '386',
  aarch64: 'arm64',
  armhf: 'arm',
  armel: 'arm',
  armv7l: 'arm',
  armv6l: 'arm',
};

/** 32-bit architectures a 64-bit host of the same family usually runs. */
const RUNS_32_BIT: Readonly<Record<string, string>> = { amd64: '386', arm64: 'arm' };

export function normalizeArch(arch: string): string {
  const a = arch.trim().toLowerCase();
  return ARCH_ALIASES[a] ?? a;
}

/** The build number (third part) of a Windows version, e.g. 17763 of 10.0.17763.5329. */
export function windowsBuild(version: string | null): number | undefined {
  const m = /^\d+\.\d+\.(\d+)/.exec(version?.trim() ?? '');
  return m ? Number(m[1]) : undefined;
}

export function portability(image: ImagePlatform, engine: EnginePlatform): Verdict {
  const blockers: string[] = [];
  const warnings: string[] = [];
  const imageOs = image.os.trim().toLowerCase();
  const engineOs = engine.os.trim().toLowerCase();
  if (imageOs === '') warnings.push(`the image records no OS; assuming ${engineOs}`);
  else if (imageOs !== engineOs) blockers.push(`the image is for ${imageOs}, and this engine runs ${engineOs} containers`);

  const imageArch = normalizeArch(image.architecture);
  const engineArch = normalizeArch(engine.architecture);
  if (imageArch === '') warnings.push(`the image records no architecture; assuming ${engineArch}`);
  else if (imageArch !== engineArch) {
    if (RUNS_32_BIT[engineArch] === imageArch) warnings.push(`the image is for ${imageArch}, which this ${engineArch} host runs only if its CPU and kernel support 32-bit code`);
    else blockers.push(`the image is for ${imageOs || engineOs}/${imageArch}, and this engine is ${engineOs}/${engineArch}`);
  }

  if (blockers.length === 0 && engineOs === 'windows') windowsVerdict(image, engine, blockers, warnings);
  return { blockers, warnings };
}

function windowsVerdict(image: ImagePlatform, engine: EnginePlatform, blockers: string[], warnings: string[]): void {
  const want = windowsBuild(image.osVersion);
  const have = windowsBuild(engine.osVersion);
  if (want === undefined) {
    warnings.push('the image records no Windows build; it may not run on this host');
    return;
  }
  if (have === undefined) {
    warnings.push(`this engine reports no Windows build; the image needs build ${want}`);
    return;
  }
  if (want > have) {
    blockers.push(`the image needs Windows build ${want}, newer than this host's ${have}; no isolation mode runs a newer build`);
  } else if (want < have) {
    if (engine.isolation === 'hyperv') warnings.push(`the image is for Windows build ${want}, older than this host's ${have}: it runs under Hyper-V isolation only`);
    else blockers.push(`process isolation needs the image's Windows build (${want}) to match the host's (${have}); use Hyper-V isolation (dockerd --exec-opt isolation=hyperv) or an image for build ${have}`);
  }
}
