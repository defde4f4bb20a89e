import { buildExampleApi } from './app.ts';

/**
 * `npm run example`: the demo platform API on EXAMPLE_PORT (default 4100), protected by the
 * Gatehouse at GATEHOUSE_ISSUER (default http://localhost:4000). API keys are checked through
 * introspection with a resource-server client: EXAMPLE_CLIENT_ID and EXAMPLE_CLIENT_SECRET
 * (`npm start` prints them on first start).
 */
const issuer = process.env.GATEHOUSE_ISSUER ?? 'http://localhost:4000';
const port = Number(process.env.EXAMPLE_PORT ?? 4100);
const clientId = process.env.EXAMPLE_CLIENT_ID;
const clientSecret = process.env.EXAMPLE_CLIENT_SECRET;

const app = buildExampleApi({
  issuer,
  audience: process.env.GATEHOUSE_AUDIENCE ?? issuer,
  ...(clientId && clientSecret ? { introspection: { clientId, clientSecret } } : {}),
});
await app.listen({ port, host: process.env.HOST ?? '127.0.0.1' });
process.stdout.write(`Example BIM API on http://127.0.0.1:${port}, trusting ${issuer}${clientId ? '' : ' (API keys disabled: set EXAMPLE_CLIENT_ID and EXAMPLE_CLIENT_SECRET)'}\n`);
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => void app.close().then(() => process.exit(0)));
