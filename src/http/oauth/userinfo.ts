import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { authenticateCaller } from '../../core/callers.ts';
import { insufficientScope, invalidRequest, invalidToken } from '../../core/errors.ts';
import { userClaims } from '../../core/tokens/id-token.ts';
import type { Gatehouse } from '../../gatehouse.ts';

/**
 * OpenID Connect Core §5.3: the claims of the signed-in user, for a Bearer access token carrying
 * `openid`. Errors per RFC 6750 §3 in `WWW-Authenticate`.
 */
export async function userinfoRoutes(app: FastifyInstance, { gatehouse }: { gatehouse: Gatehouse }): Promise<void> {
  const userinfo = async (request: FastifyRequest, reply: FastifyReply) => {
    const header = request.headers.authorization;
    const body = request.body as Record<string, unknown> | undefined;
    const fromBody = request.method === 'POST' && typeof body === 'object' && body !== null && typeof body.access_token === 'string' ? body.access_token : undefined;
    // RFC 6750 §2: one method per request.
    if (header && fromBody) throw invalidRequest('the access token was sent in more than one way');
    if (!header && !fromBody) throw invalidToken('an access token is required');
    if (header && !/^Bearer /i.test(header)) throw invalidToken('userinfo takes a Bearer access token');
    const caller = await authenticateCaller(gatehouse, header ?? `Bearer ${fromBody}`, gatehouse.clock());
    if (!caller.scopes.includes('openid')) throw insufficientScope('the access token does not carry the openid scope', 'openid');
    const user = caller.kind === 'user' ? await gatehouse.storage.users.findById(caller.sub) : undefined;
    if (!user || user.disabledAt !== null) throw invalidToken('the access token is invalid or has expired');
    return reply.header('cache-control', 'no-store').send({ sub: user.id, ...userClaims(user, caller.scopes) });
  };

  app.get('/userinfo', userinfo);
  app.post('/userinfo', userinfo);
}
