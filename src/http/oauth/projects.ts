import type { FastifyInstance } from 'fastify';
import { authenticateCaller } from '../../core/callers.ts';
import { invalidRequest } from '../../core/errors.ts';
import { parseIsoInstant } from '../../core/instants.ts';
import { issueProjectToken } from '../../core/project-tokens.ts';
import type { Gatehouse } from '../../gatehouse.ts';
import { NO_STORE, refuseOtherMethods } from './errors.ts';

/**
 * `POST /projects/{projectId}/access-tokens` (the BIMData shape): a token holder or API key mints
 * a short-lived token bound to one project for a browser viewer.
 */
export async function projectRoutes(app: FastifyInstance, { gatehouse }: { gatehouse: Gatehouse }): Promise<void> {
  app.post<{ Params: { projectId: string } }>('/projects/:projectId/access-tokens', async (request, reply) => {
    const now = gatehouse.clock();
    const caller = await authenticateCaller(gatehouse, request.headers.authorization, now);
    const body = request.body as Record<string, unknown> | undefined;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalidRequest('the body must be a JSON object with expires_at and scopes');
    const expiresAt = typeof body.expires_at === 'string' ? parseIsoInstant(body.expires_at) : undefined;
    if (expiresAt === undefined) throw invalidRequest('expires_at must be an ISO 8601 date or date-time');

    const token = await issueProjectToken(gatehouse, caller, { project: request.params.projectId, scopes: body.scopes, expiresAt }, now);
    return reply
      .code(201)
      .headers(NO_STORE)
      .send({ access_token: token.token, token_type: 'Bearer', expires_at: new Date(token.expiresAt * 1000).toISOString(), scopes: token.scopes, project: request.params.projectId });
  });
  refuseOtherMethods(app, '/projects/:projectId/access-tokens', ['POST'], 'project token endpoint');
}
