import type { BigIntStats } from 'node:fs';
import type { NodeType, TreeNode } from '../repo/tree.ts';

export type FileStat = BigIntStats;

/** The metadata every tree node carries, taken from an lstat with bigint times. */
export function nodeFromStat(
  name: string,
  type: NodeType,
  st: FileStat,
  extra: Partial<Pick<TreeNode, 'blocks' | 'subtree' | 'target' | 'rdev' | 'size'>>,
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
    ...extra,
  };
}
