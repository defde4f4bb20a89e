import type { Gatehouse } from '../gatehouse.ts';

/**
 * Records a change an operator made from the shell, as the admin API records the same change: under
 * the admin API's name for it without the `admin.` prefix (`user.disabled` for `admin.user.disabled`),
 * marked `"by": "cli"` where the admin API marks `"via": "admin_api"`. No client acted: the command
 * line holds no token, and whoever may run it may read the database.
 */
export function recordCliAction(gatehouse: Gatehouse, kind: string, target: { clientId?: string; userId?: string; data?: Record<string, unknown> } = {}): void {
  gatehouse.audit.record({ at: gatehouse.clock(), kind, outcome: 'success', clientId: target.clientId ?? null, userId: target.userId ?? null, data: { ...target.data, by: 'cli' } });
}
