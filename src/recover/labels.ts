/**
 * Labels a recovery puts on what it makes, so that a re-run recognises its own
 * work and replaces nothing, and a drill's leftovers can always be found.
 */
export const RECOVERY_LABEL = {
  /** On recovered containers, volumes and networks: the host they were recovered from. */
  recoveredFrom: 'lifeboat.recovered-from',
  /** On everything a drill makes: the drill's run id. */
  drill: 'lifeboat.drill',
  /** On everything a drill makes: the host it drills. */
  drillFrom: 'lifeboat.drill-from',
} as const;
