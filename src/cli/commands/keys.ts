import { parseArgs } from 'node:util';
import { KeyOperationError } from '../../core/tokens/keys.ts';
import type { Gatehouse } from '../../gatehouse.ts';
import { recordCliAction } from '../audit-trail.ts';
import { argumentsOf, exactly, isoTime, optionalIsoTime, table, UsageError, type Output, type Run } from '../output.ts';

export const keysUsage = `gatehouse keys list [--json]
gatehouse keys rotate [--force] [--json]
gatehouse keys withdraw KID [--json]
gatehouse keys reencrypt [--json]`;

export function keysCommand(args: string[]): Run {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'list':
      argumentsOf('keys list', rest, []);
      return async (gatehouse, out) => showKeys(gatehouse, out);
    case 'rotate': {
      const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { force: { type: 'boolean' }, json: { type: 'boolean' } } });
      exactly('keys rotate', positionals, []);
      return async (gatehouse, out) => {
        const force = values.force === true;
        try {
          await gatehouse.keys.rotate(gatehouse.clock(), { force });
        } catch (error) {
          if (error instanceof KeyOperationError && error.code === 'next_key_too_young') {
            throw new Error(`${error.message}, or now with --force in an emergency (a leaked key): resource servers may refuse the new key's tokens until they fetch the JWKS again`);
          }
          throw error;
        }
        recordCliAction(gatehouse, 'keys.rotated', force ? { data: { forced: true } } : {});
        await showKeys(gatehouse, out, 'rotated: the next keys now sign; the previous ones stay published until their tokens expire');
      };
    }
    case 'withdraw': {
      const [kid] = argumentsOf('keys withdraw', rest, ['KID']) as [string];
      return async (gatehouse, out) => {
        const withdrawn = await gatehouse.keys.withdraw(kid, gatehouse.clock());
        recordCliAction(gatehouse, 'keys.withdrawn', { data: { kid, use: withdrawn.use, state: withdrawn.state } });
        const replaced = withdrawn.state === 'active' ? `; the next ${withdrawn.use} key signs now` : '';
        await showKeys(gatehouse, out, `withdrawn: ${kid} left the JWKS and the tokens it signed are refused${replaced} (other instances follow within keys.reloadIntervalSeconds)`);
      };
    }
    case 'reencrypt':
      argumentsOf('keys reencrypt', rest, []);
      return async (gatehouse, out) => {
        const reencrypted = await gatehouse.keys.reencrypt();
        if (reencrypted > 0) recordCliAction(gatehouse, 'keys.reencrypted', { data: { count: reencrypted } });
        out.print({ reencrypted }, () =>
          reencrypted === 0
            ? 'every signing key is encrypted under the current master secret already'
            : `re-encrypted ${reencrypted} signing key${reencrypted === 1 ? '' : 's'} under the current master secret: GATEHOUSE_SECRET_PREVIOUS can now be removed from every instance`,
        );
      };
    default:
      throw new UsageError(`unknown keys command "${sub ?? ''}"`);
  }
}

async function showKeys(gatehouse: Gatehouse, out: Output, heading?: string): Promise<void> {
  const now = gatehouse.clock();
  const keys = await gatehouse.storage.keys.listAll();
  const rows = keys
    .filter((k) => k.state !== 'retired' || (k.expiresAt ?? 0) > now)
    .map((k) => ({ kid: k.kid, use: k.use, alg: k.alg, state: k.state, created_at: isoTime(k.createdAt), activated_at: optionalIsoTime(k.activatedAt), retired_at: optionalIsoTime(k.retiredAt), published_until: optionalIsoTime(k.expiresAt) }));
  out.print(rows, () =>
    [
      ...(heading ? [heading, ''] : []),
      table([['KID', 'USE', 'ALG', 'STATE', 'CREATED', 'PUBLISHED UNTIL'], ...rows.map((r) => [r.kid, r.use, r.alg, r.state, r.created_at, r.published_until ?? '-'])]),
    ].join('\n'),
  );
}
