import type { Gatehouse } from '../../gatehouse.ts';
import { recordCliAction } from '../audit-trail.ts';
import { argumentsOf, isoTime, table, UsageError, type Output } from '../output.ts';

export const keysUsage = `gatehouse keys list [--json]
gatehouse keys rotate [--json]`;

export async function keysCommand(gatehouse: Gatehouse, args: string[], out: Output): Promise<void> {
  const [sub, ...rest] = args;
  const now = gatehouse.clock();
  if (sub !== 'rotate' && sub !== 'list') throw new UsageError(`unknown keys command "${sub ?? ''}"`);
  argumentsOf(`keys ${sub}`, rest, []);
  if (sub === 'rotate') {
    await gatehouse.keys.rotate(now);
    recordCliAction(gatehouse, 'keys.rotated');
  }
  const keys = await gatehouse.storage.keys.listAll();
  const rows = keys
    .filter((k) => k.state !== 'retired' || (k.expiresAt ?? 0) > now)
    .map((k) => ({ kid: k.kid, use: k.use, alg: k.alg, state: k.state, created_at: isoTime(k.createdAt), activated_at: isoTime(k.activatedAt), retired_at: isoTime(k.retiredAt), published_until: isoTime(k.expiresAt) }));
  out.print(rows, () =>
    [
      ...(sub === 'rotate' ? ['rotated: the next keys now sign; the previous ones stay published until their tokens expire', ''] : []),
      table([['KID', 'USE', 'ALG', 'STATE', 'CREATED', 'PUBLISHED UNTIL'], ...rows.map((r) => [r.kid, r.use, r.alg, r.state, r.created_at, r.published_until])]),
    ].join('\n'),
  );
}
