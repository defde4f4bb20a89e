// The floor: the least any Fastify token endpoint on this machine can cost. It parses the form body
// exactly as Gatehouse does (as a string, then fast-querystring) and answers a constant, so the
// difference to Gatehouse is Gatehouse's own work, not HTTP or framework overhead.
import { parse } from 'fast-querystring';
import Fastify from 'fastify';

const port = Number(process.env.PORT);
const host = process.env.HOST ?? '127.0.0.1';

const app = Fastify({ logger: false });

app.addContentTypeParser(
  'application/x-www-form-urlencoded',
  { parseAs: 'string' },
  (_request, body, done) => done(null, parse(body as string)),
);

const response = { token_type: 'Bearer', expires_in: 3600, access_token: 'floor' };

app.post('/token', async () => response);

await app.listen({ port, host });
