import path from 'node:path';

/**
 * Where a peer keeps what its sources push: one repository-format store per
 * source agent, named by that agent's id, so a replica is found by the id a
 * [[peer]] entry pins and two sources can never write into each other's.
 */
export const replicasDir = (stateDir: string): string => path.join(stateDir, 'replicas');

export const replicaDir = (stateDir: string, sourceId: string): string => path.join(replicasDir(stateDir), sourceId);
