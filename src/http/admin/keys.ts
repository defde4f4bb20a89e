import type { FastifyInstance } from 'fastify';
import type { Gatehouse } from '../../gatehouse.ts';
import type { SigningKeyRecord } from '../../storage/repositories/keys.ts';
import { KeyOperationError } from '../../core/tokens/keys.ts';
import { conflict, notFound } from './problems.ts';
import { emptyBodyAsObject, idParams, iso, operation, optionalTimestamp, recordAdminAction, requestBody, timestamp } from './support.ts';

const TAG = 'Signing keys';
const SCOPE = 'admin:tokens';

const keyProperties = {
  kid: { type: 'string' },
  use: { type: 'string', enum: ['access', 'id'], description: 'What the key signs: access tokens or ID tokens.' },
  alg: { type: 'string' },
  state: { type: 'string', enum: ['next', 'active', 'retired'] },
  created_at: timestamp,
  activated_at: optionalTimestamp,
  retired_at: optionalTimestamp,
  expires_at: { ...optionalTimestamp, description: 'A retired key leaves the JWKS then, once every token it signed has expired.' },
} as const;

const keysResponse = {
  description: 'The published keys (public facts only; never private parts).',
  type: 'object',
  required: ['keys'],
  properties: { keys: { type: 'array', items: { title: 'SigningKey', type: 'object', required: Object.keys(keyProperties), properties: keyProperties } } },
} as const;

/** Signing keys: list, rotate, withdraw. */
export async function keyRoutes(app: FastifyInstance, gatehouse: Gatehouse): Promise<void> {
  const published = async (now: number) => ({ keys: (await gatehouse.storage.keys.listPublished(now)).map(describeKey) });

  app.get('/keys', { ...operation(TAG, SCOPE, 'listSigningKeys', 'List signing keys', { description: 'The keys in the JWKS: next, active, and retired ones still published.' }), schema: { response: { 200: keysResponse } } }, async () =>
    published(gatehouse.clock()),
  );

  app.post<{ Body: { force?: boolean } }>(
    '/keys/rotate',
    {
      ...operation(TAG, SCOPE, 'rotateSigningKeys', 'Rotate signing keys', {
        description:
          'For access and ID tokens alike, the next key starts signing, the active key is retired (still published until its tokens expire) and a new next key is published. Other instances pick the rotation up within `keys.reloadIntervalSeconds`. ' +
          'A next key signs only once resource servers can have fetched it: a rotation less than `keys.reloadIntervalSeconds` plus 60 s (the JWKS cache time) after its next key was published — after the previous rotation, or the first start — is refused with 409 and changes nothing, unless `force` is true. The body is optional.',
        problems: [409],
      }),
      preValidation: emptyBodyAsObject,
      schema: {
        body: requestBody({ force: { type: 'boolean', description: 'Rotate even though the next key was published moments ago, in an emergency (a leaked active key): resource servers that have not fetched the JWKS since may refuse the new key’s tokens until they do.' } }),
        response: { 200: keysResponse },
      },
    },
    async (request) => {
      const now = gatehouse.clock();
      const force = request.body.force === true;
      try {
        await gatehouse.keys.rotate(now, { force });
      } catch (error) {
        if (error instanceof KeyOperationError && error.code === 'next_key_too_young') throw conflict(`${error.message}, or now with "force": true in an emergency (a leaked key)`);
        if (error instanceof KeyOperationError) throw conflict(error.message);
        throw error;
      }
      recordAdminAction(gatehouse, request, 'admin.keys.rotated', force ? { data: { forced: true } } : {});
      return published(now);
    },
  );

  app.post<{ Params: { kid: string } }>(
    '/keys/:kid/withdraw',
    {
      ...operation(TAG, SCOPE, 'withdrawSigningKey', 'Withdraw a signing key', {
        description:
          'For a key that leaked: it leaves the JWKS at once, and every token it signed fails verification — at once on this instance (introspection, userinfo, the admin API), within `keys.reloadIntervalSeconds` on the others, and at resource servers once their cached JWKS expires (60 s; the SDK: up to 10 minutes). ' +
          'A withdrawn active key is replaced by the next key of its use at once, even one published moments ago; an active or next key withdrawn is followed by a new next key. Answers with the keys still published.',
        problems: [409],
      }),
      schema: { params: idParams('kid'), response: { 200: keysResponse } },
    },
    async (request) => {
      const now = gatehouse.clock();
      const { kid } = request.params;
      let withdrawn: SigningKeyRecord;
      try {
        withdrawn = await gatehouse.keys.withdraw(kid, now);
      } catch (error) {
        if (error instanceof KeyOperationError && error.code === 'unknown_key') throw notFound(error.message);
        if (error instanceof KeyOperationError) throw conflict(error.message);
        throw error;
      }
      recordAdminAction(gatehouse, request, 'admin.keys.withdrawn', { data: { kid, use: withdrawn.use, state: withdrawn.state } });
      return published(now);
    },
  );
}

const describeKey = (k: SigningKeyRecord) => ({
  kid: k.kid,
  use: k.use,
  alg: k.alg,
  state: k.state,
  created_at: iso(k.createdAt),
  activated_at: iso(k.activatedAt),
  retired_at: iso(k.retiredAt),
  expires_at: iso(k.expiresAt),
});
