import { randomBytes } from 'node:crypto';
import { createClient } from '../core/applications.ts';
import { createUser } from '../core/users.ts';
import type { Gatehouse } from '../gatehouse.ts';
import { EmailTakenError } from '../storage/repositories/users.ts';

export interface DemoSetup {
  application: { client_id: string; client_secret: string };
  admin: { client_id: string; client_secret: string };
  firstParty: { client_id: string; client_secret: string };
  platformApi: { client_id: string; client_secret: string };
  user: { email: string; password: string };
}

/**
 * On an empty database, creates what a newcomer needs to try every grant at once: an application
 * (client credentials), an admin back office, a first-party application with the password grant,
 * and a user. Returns undefined when the database holds clients or the demo user already.
 */
export async function seedDemo(gatehouse: Gatehouse): Promise<DemoSetup | undefined> {
  if ((await gatehouse.storage.clients.list()).length > 0) return undefined;
  const now = gatehouse.clock();
  const catalogue = gatehouse.scopes.catalogue;
  const plain = Object.keys(catalogue).filter((s) => !catalogue[s]!.admin && !catalogue[s]!.userOnly);
  const admin = Object.keys(catalogue).filter((s) => catalogue[s]!.admin);
  const userScopes = Object.keys(catalogue).filter((s) => !catalogue[s]!.admin);

  // The demo user first: its email is unique, so when several instances start at once on an empty
  // database exactly one of them seeds, and the others start without a demo instead of failing.
  const password = randomBytes(9).toString('base64url');
  let user;
  try {
    user = await createUser(gatehouse.storage, { email: 'demo@example.com', password, name: 'Demo User' }, now);
  } catch (error) {
    if (error instanceof EmailTakenError) return undefined;
    throw error;
  }
  const application = await createClient(gatehouse, { name: 'Demo application', type: 'confidential', grantTypes: ['client_credentials'], scopes: plain }, now);
  const backOffice = await createClient(gatehouse, { name: 'Demo back office', type: 'confidential', grantTypes: ['client_credentials'], scopes: admin, isAdmin: true }, now);
  const firstParty = await createClient(
    gatehouse,
    { name: 'Demo first-party app', type: 'confidential', grantTypes: ['password', 'refresh_token'], scopes: userScopes, defaultScopes: plain, firstParty: true },
    now,
  );
  // The example platform API checks API keys through introspection, as a resource server.
  const platformApi = await createClient(gatehouse, { name: 'Demo platform API', type: 'confidential', grantTypes: [], scopes: [], isResourceServer: true }, now);
  return {
    application: { client_id: application.client.id, client_secret: application.secret! },
    admin: { client_id: backOffice.client.id, client_secret: backOffice.secret! },
    firstParty: { client_id: firstParty.client.id, client_secret: firstParty.secret! },
    platformApi: { client_id: platformApi.client.id, client_secret: platformApi.secret! },
    user: { email: user.email, password },
  };
}

export function describeDemo(issuer: string, demo: DemoSetup): string {
  const { application, admin, firstParty, platformApi, user } = demo;
  return `
Demo set-up (secrets are shown this once; they are stored only as digests):

  Demo application (client credentials)
    client_id:     ${application.client_id}
    client_secret: ${application.client_secret}

  curl -s -u '${application.client_id}:${application.client_secret}' -d grant_type=client_credentials -d scope=objects:read ${issuer}/token

  Demo back office (admin client: admin scopes only)
    client_id:     ${admin.client_id}
    client_secret: ${admin.client_secret}

  curl -s -u '${admin.client_id}:${admin.client_secret}' -d grant_type=client_credentials ${issuer}/token

  Demo first-party app (password and refresh_token grants)
    client_id:     ${firstParty.client_id}
    client_secret: ${firstParty.client_secret}

  Demo user
    email:    ${user.email}
    password: ${user.password}

  curl -s ${issuer}/access_token -H 'content-type: application/json' \\
    -d '{"grant_type":"password","client_id":"${firstParty.client_id}","client_secret":"${firstParty.client_secret}","username":"${user.email}","password":"${user.password}"}'

  curl -s ${issuer}/access_token -H 'content-type: application/json' \\
    -d '{"grant_type":"refresh_token","client_id":"${firstParty.client_id}","client_secret":"${firstParty.client_secret}","refresh_token":"<refresh_token from above>"}'

  The example platform API (a protected BIM objects API built on the SDK), in another terminal:

  GATEHOUSE_ISSUER=${issuer} EXAMPLE_CLIENT_ID=${platformApi.client_id} EXAMPLE_CLIENT_SECRET=${platformApi.client_secret} npm run example
  then GET http://127.0.0.1:4100/objects with the header "Authorization: Bearer <an access token from above>"
`;
}
