import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { jwtVerify, type JWTPayload } from 'jose';
import { userClaims } from '../../core/tokens/id-token.ts';
import type { Gatehouse } from '../../gatehouse.ts';

/**
 * OpenID Connect Core §5.3: the claims of the signed-in user, for a Bearer access token carrying
 * `openid`. Errors per RFC 6750 §3 in `WWW-Authenticate`.
 */
export async function userinfoRoutes(app: FastifyInstance, { gatehouse }: { gatehouse: Gatehouse }): Promise<void> {
  const fail = (reply: FastifyReply, status: number, error: string, description: string) =>
    reply
      .code(status)
      .header('www-authenticate', `Bearer realm="gatehouse", error="${error}", error_description="${description}"`)
      .header('cache-control', 'no-store')
      .send({ error, error_description: description });

  const userinfo = async (request: FastifyRequest, reply: FastifyReply) => {
    const header = request.headers.authorization;
    const fromBody = request.method === 'POST' && typeof (request.body as Record<string, unknown> | undefined)?.access_token === 'string';
    // RFC 6750 §2: one method per request; the header is the one everyone supports.
    if (header && fromBody) return fail(reply, 400, 'invalid_request', 'the access token was sent in more than one way');
    const token = header?.match(/^Bearer ([A-Za-z0-9\-._~+/]+=*)$/i)?.[1] ?? (fromBody ? ((request.body as Record<string, string>).access_token as string) : undefined);
    if (!token) return reply.code(401).header('www-authenticate', 'Bearer realm="gatehouse"').header('cache-control', 'no-store').send({ error: 'invalid_token', error_description: 'an access token is required' });

    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(
        token,
        async (header) => {
          const key = header.kid ? gatehouse.keys.publicKey(header.kid) : undefined;
          if (!key || key.use !== 'access' || key.alg !== header.alg) throw new Error('unknown key');
          return key.key;
        },
        { issuer: gatehouse.config.issuer, audience: gatehouse.config.tokens.audience, typ: 'at+jwt', currentDate: new Date(gatehouse.clock() * 1000) },
      ));
    } catch {
      return fail(reply, 401, 'invalid_token', 'the access token is invalid or has expired');
    }
    if (typeof payload.jti === 'string' && (await gatehouse.storage.revocations.isJtiRevoked(payload.jti))) return fail(reply, 401, 'invalid_token', 'the access token has been revoked');
    const scopes = typeof payload.scope === 'string' ? payload.scope.split(' ') : [];
    if (!scopes.includes('openid')) return fail(reply, 403, 'insufficient_scope', 'the access token does not carry the openid scope');
    const user = typeof payload.sub === 'string' ? await gatehouse.storage.users.findById(payload.sub) : undefined;
    if (!user || user.disabledAt !== null) return fail(reply, 401, 'invalid_token', 'the access token is invalid or has expired');
    return reply.header('cache-control', 'no-store').send({ sub: user.id, ...userClaims(user, scopes) });
  };

  app.get('/userinfo', userinfo);
  app.post('/userinfo', userinfo);
}
