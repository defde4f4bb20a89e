import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { createAuthenticator, fastifyGatehouse, type AuthenticatorOptions, type Principal } from 'gatehouse/resource';

/**
 * A BIM objects platform, protected only through Gatehouse's resource-server SDK: it never reads
 * Gatehouse's database. Scopes decide everything: `objects:read` lists, `objects:download` (a
 * user-only scope) downloads, project scopes read and write models, documents and BCF topics, and
 * a project token works on its own project only.
 */
export function buildExampleApi(options: AuthenticatorOptions): FastifyInstance {
  const app = Fastify({ logger: false });
  const gatehouse = fastifyGatehouse(createAuthenticator(options));
  const principal = (request: FastifyRequest): Principal => request.principal!;

  const objects = [
    { id: 'door-01', name: 'Fire door, single leaf', category: 'doors', format: 'ifc', bytes: Buffer.from('ISO-10303-21;\nHEADER;FILE_NAME(\'door-01.ifc\');ENDSEC;\nDATA;#1=IFCDOOR();ENDSEC;\nEND-ISO-10303-21;\n') },
    { id: 'window-07', name: 'Triple-glazed window', category: 'windows', format: 'ifc', bytes: Buffer.from('ISO-10303-21;\nHEADER;FILE_NAME(\'window-07.ifc\');ENDSEC;\nDATA;#1=IFCWINDOW();ENDSEC;\nEND-ISO-10303-21;\n') },
  ];
  const projects = new Map<string, { models: { id: string; name: string }[]; documents: { id: string; name: string }[]; topics: { id: string; title: string }[] }>();
  const project = (id: string) => {
    let found = projects.get(id);
    if (!found) {
      found = { models: [{ id: `${id}-m1`, name: 'Architecture' }], documents: [{ id: `${id}-d1`, name: 'Specifications.pdf' }], topics: [] };
      projects.set(id, found);
    }
    return found;
  };
  const metadata = ({ bytes, ...rest }: (typeof objects)[number]) => ({ ...rest, size: bytes.length });

  const forbidden = (reply: FastifyReply, description: string) =>
    reply.code(403).header('www-authenticate', `Bearer realm="api", error="insufficient_scope", error_description="${description}"`).send({ error: 'insufficient_scope', error_description: description });

  /** A project token may touch only the project it is bound to. */
  const sameProject = (request: FastifyRequest<{ Params: { projectId: string } }>, reply: FastifyReply): boolean => {
    const bound = principal(request).project;
    if (bound !== undefined && bound !== request.params.projectId) {
      void forbidden(reply, 'the token is bound to another project');
      return false;
    }
    return true;
  };

  app.get('/me', { preHandler: gatehouse.requireScope() }, async (request, reply) => {
    const { kind, subject, clientId, scopes, project: bound, actor } = principal(request);
    // Admin tokens carry admin scopes only and are for the back office alone (BIMobject: "can only
    // be used for admin functionality"), so even this route, which needs no scope, refuses them.
    if (scopes.length > 0 && scopes.every((scope) => scope.startsWith('admin:'))) return forbidden(reply, 'admin tokens are for the back office only');
    return { kind, subject, client_id: clientId, scopes, project: bound ?? null, actor: actor ?? null };
  });

  app.get('/objects', { preHandler: gatehouse.requireScope('objects:read') }, async () => ({ objects: objects.map(metadata) }));
  app.get<{ Params: { id: string } }>('/objects/:id', { preHandler: gatehouse.requireScope('objects:read') }, async (request, reply) => {
    const object = objects.find((o) => o.id === request.params.id);
    return object ? metadata(object) : reply.code(404).send({ error: 'not_found' });
  });
  app.get<{ Params: { id: string } }>('/objects/:id/download', { preHandler: gatehouse.requireScope('objects:download') }, async (request, reply) => {
    const object = objects.find((o) => o.id === request.params.id);
    if (!object) return reply.code(404).send({ error: 'not_found' });
    return reply.type('application/x-step').header('content-disposition', `attachment; filename="${object.id}.${object.format}"`).send(object.bytes);
  });

  for (const [collection, read, write] of [
    ['models', 'model:read', 'model:write'],
    ['documents', 'document:read', 'document:write'],
    ['topics', 'bcf:read', 'bcf:write'],
  ] as const) {
    app.get<{ Params: { projectId: string } }>(`/projects/:projectId/${collection}`, { preHandler: gatehouse.requireScope(read) }, async (request, reply) => {
      if (!sameProject(request, reply)) return reply;
      return { project: request.params.projectId, [collection]: project(request.params.projectId)[collection] };
    });
    app.post<{ Params: { projectId: string }; Body: { name?: unknown; title?: unknown } }>(`/projects/:projectId/${collection}`, { preHandler: gatehouse.requireScope(write) }, async (request, reply) => {
      if (!sameProject(request, reply)) return reply;
      const label = request.body?.name ?? request.body?.title;
      if (typeof label !== 'string' || label.trim() === '' || label.length > 200) return reply.code(400).send({ error: 'invalid_request', error_description: 'name is required' });
      const items = project(request.params.projectId)[collection] as { id: string; name?: string; title?: string }[];
      const item = { id: `${request.params.projectId}-${collection[0]}${items.length + 1}`, ...(collection === 'topics' ? { title: label } : { name: label }) };
      items.push(item);
      return reply.code(201).send(item);
    });
  }

  // The back office: admin tokens (which carry only admin scopes) and nothing else.
  app.get('/admin/stats', { preHandler: gatehouse.requireScope('admin:clients') }, async () => ({ objects: objects.length, projects: projects.size }));

  return app;
}
