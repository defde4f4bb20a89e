import type { FastifyInstance } from 'fastify';
import { withDeadline } from '../core/deadline.ts';
import type { Gatehouse } from '../gatehouse.ts';

/** `/healthz`: the process answers. `/readyz`: the database answers too (within two seconds). */
export async function healthRoutes(app: FastifyInstance, { gatehouse }: { gatehouse: Gatehouse }): Promise<void> {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (request, reply) => {
    try {
      await withDeadline(gatehouse.storage.ping(), 2000, 'database ping timed out');
      return { status: 'ready' };
    } catch (error) {
      request.log.warn({ err: error }, 'readiness check failed');
      return reply.code(503).send({ status: 'unavailable', reason: 'the database does not answer' });
    }
  });
}
