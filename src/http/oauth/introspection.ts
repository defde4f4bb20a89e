import type { FastifyInstance, FastifyRequest } from 'fastify';
import { invalidClient, invalidRequest, OAuthError } from '../../core/errors.ts';
import { introspect } from '../../core/introspection.ts';
import { requestParameter } from '../../core/parameters.ts';
import { revoke } from '../../core/revocation.ts';
import { presentedClientId } from '../../core/token-endpoint.ts';
import type { Gatehouse } from '../../gatehouse.ts';
import { NO_STORE, refuseOtherMethods } from './errors.ts';

/**
 * The parameters of an introspection or revocation request, each a single string (see
 * requestParameter): an empty `token` is a missing one (RFC 6749 §3.1), not an unknown token.
 */
function parameters(request: FastifyRequest): Record<string, string | undefined> {
  const body = request.body;
  if (body !== undefined && body !== null && (typeof body !== 'object' || Array.isArray(body))) throw invalidRequest('the body must be a set of parameters');
  const params: Record<string, string | undefined> = Object.create(null);
  for (const name of ['token', 'token_type_hint', 'client_id', 'client_secret', 'client_assertion', 'client_assertion_type']) {
    const value = body ? requestParameter(body as Record<string, unknown>, name) : undefined;
    if (value === undefined) continue;
    if (value.includes('\0')) throw invalidRequest(`the parameter ${name} must be a string`);
    params[name] = value;
  }
  return params;
}

/** RFC 7662 introspection and RFC 7009 revocation, both for authenticated clients. */
export async function introspectionRoutes(app: FastifyInstance, { gatehouse }: { gatehouse: Gatehouse }): Promise<void> {
  /**
   * Runs `answer`, recording its refusal by RFC error code as the token endpoint records its own
   * (TokenEndpoint.handle): these endpoints take the same client credentials, so secrets guessed here
   * must leave the same trace, aggregated to one row a minute per client id as presented, address and error.
   */
  const auditingRefusals = async (kind: 'introspection.refused' | 'revocation.refused', request: FastifyRequest, answer: () => Promise<unknown>) => {
    try {
      return await answer();
    } catch (error) {
      if (error instanceof OAuthError) {
        const body = typeof request.body === 'object' && request.body !== null ? (request.body as Record<string, unknown>) : {};
        const clientId = presentedClientId(body.client_id, request.headers.authorization);
        const data = { error: error.error, address: request.ip };
        gatehouse.audit.recordRepeatable(JSON.stringify([kind, clientId, data.address, data.error]), { at: gatehouse.clock(), kind, outcome: 'failure', clientId, userId: null, data });
      }
      throw error;
    }
  };

  app.post('/introspect', (request, reply) => auditingRefusals('introspection.refused', request, async () => {
    const params = parameters(request);
    const now = gatehouse.clock();
    const { client, method } = await gatehouse.tokenEndpoint.authenticateClient({ authorization: request.headers.authorization, address: request.ip }, params, now);
    // RFC 7662 §2.1: the endpoint "MUST require some form of authorization"; a public client has
    // none, even when it names itself in a Basic header (with an empty password), which is then challenged.
    if (method === 'none') throw invalidClient('introspection needs a confidential client', request.headers.authorization !== undefined);
    if (!params.token) throw invalidRequest('token is required');
    return reply.headers(NO_STORE).send(await introspect(gatehouse, client, params.token, now));
  }));

  app.post('/revoke', (request, reply) => auditingRefusals('revocation.refused', request, async () => {
    const params = parameters(request);
    const now = gatehouse.clock();
    // RFC 7009 §2.1: public clients may revoke their own tokens, identified by client_id.
    const { client } = await gatehouse.tokenEndpoint.authenticateClient({ authorization: request.headers.authorization, address: request.ip }, params, now);
    if (!params.token) throw invalidRequest('token is required');
    await revoke(gatehouse, client, params.token, now);
    return reply.headers(NO_STORE).code(200).send();
  }));

  // RFC 7662 §2.1 and RFC 7009 §2.1 define POST only.
  refuseOtherMethods(app, '/introspect', ['POST'], 'introspection endpoint');
  refuseOtherMethods(app, '/revoke', ['POST'], 'revocation endpoint');
}
