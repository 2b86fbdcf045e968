import type { BigIntStats } from 'node:fs';
import type { NodeType, TreeNode } from '../repo/tree.ts';

export type FileStat = BigIntStats;

/** The metadata every tree node carries, taken from an lstat with bigint times. */
export function nodeFromStat(
  name: string,
  type: NodeType,
  st: FileStat,
  extra: Partial<Pick<TreeNode, 'blocks' | 'lists' | 'subtree' | 'target' | 'rdev' | 'size' | 'files' | 'dirs' | 'bytes'>>,
): TreeNode {
  return {
    name,
    type,
    mode: Number(st.mode & 0o7777n),
    uid: Number(st.uid),
    gid: Number(st.gid),
    mtime: String(st.mtimeNs),
    ctime: String(st.ctimeNs),
    ino: String(st.ino),
    dev: String(st.dev),
    nlink: Number(st.nlink),
    size: type === 'file' ? Number(st.size) : 0,
    ...definedOnly(extra),
  };
}

/** JSON drops undefined fields anyway; dropping them here keeps nodes equal to their decoded form. */
function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
