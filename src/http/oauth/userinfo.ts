import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { authenticateCaller, credentialOf } from '../../core/callers.ts';
import { insufficientScope, invalidToken, malformedCredentials } from '../../core/errors.ts';
import { userClaims } from '../../core/tokens/id-token.ts';
import type { Gatehouse } from '../../gatehouse.ts';
import { NO_STORE, refuseOtherMethods } from './errors.ts';

/**
 * The access token of a userinfo request: in the Authorization header (RFC 6750 §2.1) or, on POST,
 * as the `access_token` body parameter (§2.2; JSON bodies too, DESIGN §1). The URI query (§2.3) is
 * not a method Gatehouse takes (RFC 9700 §2.5), so a token there counts as none.
 */
function accessTokenOf(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization || undefined;
  const body = request.body;
  let fromBody: string | undefined;
  if (request.method === 'POST' && typeof body === 'object' && body !== null && !Array.isArray(body) && Object.hasOwn(body, 'access_token')) {
    const value = (body as Record<string, unknown>).access_token;
    if (Array.isArray(value)) throw malformedCredentials('the parameter access_token is included more than once');
    if (typeof value !== 'string') throw malformedCredentials('the parameter access_token must be a string');
    // RFC 6749 §3.1: a parameter sent without a value is treated as omitted.
    if (value !== '') fromBody = value;
  }
  // RFC 6750 §2: "Clients MUST NOT use more than one method to transmit the token in each request."
  if (header !== undefined && fromBody !== undefined) throw malformedCredentials('the access token was sent in more than one way');
  if (fromBody !== undefined) {
    if (!/^\S+$/.test(fromBody)) throw malformedCredentials('the parameter access_token is malformed');
    return fromBody;
  }
  return credentialOf(header, ['bearer']).value;
}

/**
 * OpenID Connect Core §5.3: the claims of the signed-in user, for a Bearer access token carrying
 * `openid`. Errors per RFC 6750 §3 in `WWW-Authenticate`.
 */
export async function userinfoRoutes(app: FastifyInstance, { gatehouse }: { gatehouse: Gatehouse }): Promise<void> {
  const userinfo = async (request: FastifyRequest, reply: FastifyReply) => {
    const token = accessTokenOf(request);
    // Refuses the token when its user has been deleted or disabled, or its client deleted.
    const caller = await authenticateCaller(gatehouse, `Bearer ${token}`, gatehouse.clock());
    if (!caller.scopes.includes('openid')) throw insufficientScope('the access token does not carry the openid scope', 'openid');
    const { user } = caller;
    // A client's own token (client credentials) names no user to describe.
    if (!user) throw invalidToken('the access token was not issued for a user');
    return reply.headers(NO_STORE).send({ sub: user.id, ...userClaims(user, caller.scopes) });
  };

  app.get('/userinfo', userinfo);
  app.post('/userinfo', userinfo);
  refuseOtherMethods(app, '/userinfo', ['GET', 'POST'], 'userinfo endpoint');
}
