import { describe, expect, it } from 'vitest';
import { parse } from 'smol-toml';
import { locateKey } from './locate.ts';

const lines = (...l: string[]) => l.join('\n');

describe('locateKey', () => {
  it('finds keys under table headers, skipping comments and blank lines', () => {
    const text = lines(
      '# block_size = "1KiB" in a comment',
      '[agent]',
      'host = "a" # trailing comment',
      '',
      '# [backup] commented out',
      '  [ backup ]  # spaced header',
      '  block_size   =   "64KiB"',
      'workers=2',
    );
    expect(locateKey(text, ['agent'])).toBe(2);
    expect(locateKey(text, ['agent', 'host'])).toBe(3);
    expect(locateKey(text, ['backup'])).toBe(6);
    expect(locateKey(text, ['backup', 'block_size'])).toBe(7);
    expect(locateKey(text, ['backup', 'workers'])).toBe(8);
  });

  it('falls back to the table header for a missing key, and to 0 for a missing table', () => {
    const text = lines('[agent]', 'host = "a"', '[backup]', 'workers = 2');
    expect(locateKey(text, ['backup', 'chunker'])).toBe(3);
    expect(locateKey(text, ['retention', 'keep_last'])).toBe(0);
    expect(locateKey(text, [])).toBe(0);
    expect(locateKey('', ['agent'])).toBe(0);
  });

  it('resolves dotted keys, at top level and inside tables', () => {
    const text = lines('agent.host = "a"', 'backup . "block_size" = "64KiB"', '[repository]', 'x.y.z = 1');
    expect(locateKey(text, ['agent', 'host'])).toBe(1);
    expect(locateKey(text, ['agent', 'log_level'])).toBe(1);
    expect(locateKey(text, ['backup', 'block_size'])).toBe(2);
    expect(locateKey(text, ['repository', 'x', 'y', 'z'])).toBe(4);
    expect(locateKey(text, ['repository', 'x', 'q'])).toBe(4);
  });

  it('reads quoted keys, including dots and escapes inside quotes', () => {
    const text = lines('[a]', '"b.c" = 1', "'d.e' = 2", '"q\\"x" = 3', '[ "f g" . h ]', 'k = 4');
    expect(locateKey(text, ['a', 'b.c'])).toBe(2);
    expect(locateKey(text, ['a', 'b', 'c'])).toBe(1); // not a dotted key: falls back to [a]
    expect(locateKey(text, ['a', 'd.e'])).toBe(3);
    expect(locateKey(text, ['a', 'q"x'])).toBe(4);
    expect(locateKey(text, ['f g', 'h', 'k'])).toBe(6);
  });

  it('counts arrays of tables by index, nested ones per parent element', () => {
    const text = lines(
      '[[peer]]', //        1  peer[0]
      'address = "a"', //   2
      '[[peer]]', //        3  peer[1]
      'name = "b"', //      4
      '[[peer.dir]]', //    5  peer[1].dir[0]
      'path = "/x"', //     6
      '[[peer.dir]]', //    7  peer[1].dir[1]
      '[peer.tls]', //      8  peer[1].tls
      'cert = "c"', //      9
      '[[peer]]', //        10 peer[2]
      '[[peer.dir]]', //    11 peer[2].dir[0]
      'path = "/y"', //     12
    );
    expect(locateKey(text, ['peer'])).toBe(1);
    expect(locateKey(text, ['peer', 0, 'address'])).toBe(2);
    expect(locateKey(text, ['peer', 1])).toBe(3);
    expect(locateKey(text, ['peer', 1, 'address'])).toBe(3); // missing: its element's header
    expect(locateKey(text, ['peer', 1, 'name'])).toBe(4);
    expect(locateKey(text, ['peer', 1, 'dir', 0, 'path'])).toBe(6);
    expect(locateKey(text, ['peer', 1, 'dir', 1])).toBe(7);
    expect(locateKey(text, ['peer', 1, 'tls', 'cert'])).toBe(9);
    expect(locateKey(text, ['peer', 2, 'dir', 0, 'path'])).toBe(12);
    expect(locateKey(text, ['peer', 2, 'dir', 1])).toBe(11); // no such element: the array
    expect(locateKey(text, ['peer', 5, 'address'])).toBe(1);
  });

  it('does not mistake the contents of multi-line values for keys or headers', () => {
    const text = lines(
      'a = """', //                1
      'b = 1', //                  2  inside a string
      '[t]', //                    3  inside a string
      '"""', //                    4
      "c = '''x = 1", //           5
      "[u]'''", //                 6
      'd = [', //                  7
      '  ["[v]", "#"],', //        8
      '  ["e = 1"]', //            9
      ']', //                      10
      'f = { g = 1, h = "}" }', // 11
      'b = 2', //                  12
      '[t]', //                    13
      'x = """q""""', //           14 ends with a quote of content
      'y = 1', //                  15
      'z = "#" # [ unbalanced', // 16
      'w = 1', //                  17
    );
    expect(parse(text)).toMatchObject({ b: 2, t: { x: 'q"', y: 1 } }); // the case is valid TOML
    expect(locateKey(text, ['b'])).toBe(12);
    expect(locateKey(text, ['t'])).toBe(13);
    expect(locateKey(text, ['u'])).toBe(0);
    expect(locateKey(text, ['e'])).toBe(0);
    expect(locateKey(text, ['f', 'h'])).toBe(11); // inside an inline table: the key that holds it
    expect(locateKey(text, ['t', 'y'])).toBe(15);
    expect(locateKey(text, ['t', 'w'])).toBe(17);
  });

  it('handles CRLF line endings', () => {
    expect(locateKey('[agent]\r\nhost = "a"\r\n\r\n[backup]\r\nworkers = 1\r\n', ['backup', 'workers'])).toBe(5);
  });
});
