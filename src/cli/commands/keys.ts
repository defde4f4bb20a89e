import type { Gatehouse } from '../../gatehouse.ts';
import { recordCliAction } from '../audit-trail.ts';
import { argumentsOf, isoTime, optionalIsoTime, table, UsageError, type Output, type Run } from '../output.ts';

export const keysUsage = `gatehouse keys list [--json]
gatehouse keys rotate [--json]`;

export function keysCommand(args: string[]): Run {
  const [sub, ...rest] = args;
  if (sub !== 'rotate' && sub !== 'list') throw new UsageError(`unknown keys command "${sub ?? ''}"`);
  argumentsOf(`keys ${sub}`, rest, []);
  return async (gatehouse, out) => showKeys(gatehouse, sub, out);
}

async function showKeys(gatehouse: Gatehouse, sub: 'rotate' | 'list', out: Output): Promise<void> {
  const now = gatehouse.clock();
  if (sub === 'rotate') {
    await gatehouse.keys.rotate(now);
    recordCliAction(gatehouse, 'keys.rotated');
  }
  const keys = await gatehouse.storage.keys.listAll();
  const rows = keys
    .filter((k) => k.state !== 'retired' || (k.expiresAt ?? 0) > now)
    .map((k) => ({ kid: k.kid, use: k.use, alg: k.alg, state: k.state, created_at: isoTime(k.createdAt), activated_at: optionalIsoTime(k.activatedAt), retired_at: optionalIsoTime(k.retiredAt), published_until: optionalIsoTime(k.expiresAt) }));
  out.print(rows, () =>
    [
      ...(sub === 'rotate' ? ['rotated: the next keys now sign; the previous ones stay published until their tokens expire', ''] : []),
      table([['KID', 'USE', 'ALG', 'STATE', 'CREATED', 'PUBLISHED UNTIL'], ...rows.map((r) => [r.kid, r.use, r.alg, r.state, r.created_at, r.published_until ?? '-'])]),
    ].join('\n'),
  );
}
