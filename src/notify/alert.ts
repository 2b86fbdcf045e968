import type { NOTIFY_EVENTS } from '../config/schema.ts';

export type NotifyEvent = (typeof NOTIFY_EVENTS)[number];
/** The events that are states of something (fire, then resolve); `recovered` is a one-off. */
export type ConditionEvent = Exclude<NotifyEvent, 'recovered'>;
export type AlertState = 'firing' | 'resolved';
export type AlertDetail = Readonly<Record<string, string | number | boolean | null>>;

/** One notification, as a webhook receives it (JSON) and every other type renders it. */
export interface Alert {
  /** The same for every attempt and every entry of one transition, so a receiver can drop a repeat. */
  readonly id: string;
  readonly host: string;
  readonly event: NotifyEvent;
  readonly state: AlertState;
  /** The volume, peer, target or source it is about. */
  readonly subject: string;
  /** When the transition was first seen (ISO). */
  readonly time: string;
  /** One line for people. */
  readonly summary: string;
  readonly detail?: AlertDetail;
}

/** Short names of the events, for titles and subjects. */
export const EVENT_TITLES: Readonly<Record<NotifyEvent, string>> = {
  backup_failed: 'backup failed',
  rpo_over_target: 'recovery point over target',
  overdue: 'backup overdue',
  peer_unreachable: 'peer unreachable',
  target_unreachable: 'object-storage target unreachable',
  drill_failed: 'DR drill failed',
  recovered: 'containers recovered',
};
