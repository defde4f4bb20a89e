import type { FastifyInstance } from 'fastify';
import type { Gatehouse } from '../../gatehouse.ts';
import { invalidRequest } from '../../core/errors.ts';
import type { TokenResponse } from '../../core/token-endpoint.ts';
import type { Metrics } from '../metrics.ts';
import { NO_STORE, refuseOtherMethods } from './errors.ts';

const JSON_NO_STORE = { ...NO_STORE, 'content-type': 'application/json; charset=utf-8' };

/** The token endpoint at `/token` and, as some platforms document it, `/access_token`. */
export async function tokenRoutes(app: FastifyInstance, { gatehouse, metrics }: { gatehouse: Gatehouse; metrics: Metrics }): Promise<void> {
  const repeated = gatehouse.config.tokens.clientCredentialsReuseSeconds > 0 ? new RepeatedAnswers() : undefined;
  for (const url of ['/token', '/access_token']) {
    app.post(url, async (request, reply) => {
      const body = request.body;
      if (body !== undefined && body !== null && (typeof body !== 'object' || Array.isArray(body))) {
        throw invalidRequest('the body must be a set of parameters');
      }
      const response = await gatehouse.tokenEndpoint.handle({
        params: (body ?? {}) as Record<string, unknown>,
        authorization: request.headers.authorization,
        address: request.ip,
      });
      // Only answered requests get here, so the grant type is a registered one.
      const grantType = String((body as Record<string, unknown>).grant_type);
      metrics.tokenIssued(grantType);
      if (repeated && grantType === 'client_credentials') return reply.headers(JSON_NO_STORE).send(repeated.serialize(response));
      return reply.headers(NO_STORE).send(response);
    });
    refuseOtherMethods(app, url, ['POST'], 'token endpoint');
  }
}

/**
 * Client-credentials answers, serialized once. Identical requests within
 * `tokens.clientCredentialsReuseSeconds` get the same token (ClientTokenReuse), so an answer
 * differs from the one before it at most in `expires_in`, once a second: its JSON (about as long
 * as the token) is encoded again only then, not on every request. An answer that differs in any
 * member is serialized afresh.
 */
class RepeatedAnswers {
  static readonly MAX_ENTRIES = 1_000;
  #byToken = new Map<string, { response: TokenResponse; members: number; body: string }>();

  serialize(response: TokenResponse): string {
    const cached = this.#byToken.get(response.access_token);
    if (cached && sameMembers(response, cached.response, cached.members)) return cached.body;
    // A string, not a Buffer: Node writes a string body with the head in one write, a Buffer in two.
    const body = JSON.stringify(response);
    if (!cached && this.#byToken.size >= RepeatedAnswers.MAX_ENTRIES) this.#byToken.delete(this.#byToken.keys().next().value!);
    this.#byToken.set(response.access_token, { response: { ...response }, members: Object.keys(response).length, body });
    return body;
  }
}

/** Whether `answer` has exactly the `count` members of `earlier`, with the same values. */
function sameMembers(answer: TokenResponse, earlier: TokenResponse, count: number): boolean {
  let members = 0;
  for (const name in answer) {
    if (answer[name as keyof TokenResponse] !== earlier[name as keyof TokenResponse]) return false;
    members += 1;
  }
  return members === count;
}
