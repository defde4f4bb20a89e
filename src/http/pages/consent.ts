import type { FastifyInstance } from 'fastify';
import { currentSession, field, sendOutcome, type Pages } from './context.ts';
import { renderPage } from './render.ts';

/** The consent page: the application's name, the scopes it asks for, Allow and Deny. */
export async function consentRoutes(app: FastifyInstance, pages: Pages): Promise<void> {
  const { gatehouse } = pages;

  app.get('/consent', async (request, reply) => {
    const pendingId = String((request.query as Record<string, unknown>).request ?? '');
    const session = await currentSession(pages, request);
    const outcome = await gatehouse.authorizationEndpoint.pendingConsent(pendingId, session, request.browser);
    if (outcome.kind !== 'consent') return sendOutcome(pages, reply, outcome, false);
    const { client, scopes, redirectUri } = outcome;
    return renderPage(reply, 'consent', {
      title: `Authorize ${client.name}`,
      pendingId,
      client: { name: client.name, description: client.description, baseUrl: safeHttpUrl(client.baseUrl) },
      // Who answers for the application: the operators, or the developer who owns it (registered it
      // in the portal, or was given it), who chooses its name, description and redirect URIs. The
      // developer is not named: an account's address is theirs to keep, and unverified where mail
      // is not configured.
      byOperators: client.ownerUserId === null,
      scopes,
      destination: destinationOf(redirectUri),
      user: session!.user.email,
    });
  });

  app.post('/consent', async (request, reply) => {
    const pendingId = field(request.body, 'request') ?? '';
    if (!pages.csrf.verify(request, field(request.body, 'csrf'))) {
      return renderPage(reply, 'error', { title: 'Please try again', message: 'The form expired or did not come from this site, so nothing was authorized. Go back to the application and start again.' }, 403);
    }
    const session = await currentSession(pages, request);
    if (!session) return sendOutcome(pages, reply, await gatehouse.authorizationEndpoint.pendingConsent(pendingId, undefined, request.browser), true);
    const decision = field(request.body, 'decision');
    if (decision !== 'allow' && decision !== 'deny') return renderPage(reply, 'error', { title: 'Please choose', message: 'Choose Allow or Deny.' }, 400);
    return sendOutcome(pages, reply, await gatehouse.authorizationEndpoint.answerConsent(pendingId, session, decision === 'allow', request.ip, request.browser), true);
  });
}

/**
 * Where a redirect URI sends the person, in words: the origin of an http(s) URI, or the app that
 * opens a private-use scheme (RFC 8252 §7.1). The base URL is only what the developer says of the
 * application; this is where the browser goes, so an application named after another cannot hide
 * that its answer goes elsewhere.
 */
function destinationOf(redirectUri: string): string {
  const url = new URL(redirectUri);
  return url.protocol === 'https:' || url.protocol === 'http:' ? url.origin : `the app on your device that opens ${url.protocol.slice(0, -1)} links`;
}

/** Only http(s) links are shown to people; anything else (javascript:, data:) is dropped. */
export function safeHttpUrl(value: string | null): string | undefined {
  if (!value) return undefined;
  try {
    const url = new URL(value);
    return url.protocol === 'https:' || url.protocol === 'http:' ? url.toString() : undefined;
  } catch {
    return undefined;
  }
}
