import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DIALECTS } from '../support/databases.ts';
import { HttpBrowser, hiddenField } from '../support/browser.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

const CALLBACK = 'https://app.example/callback';
const NATIVE_CALLBACK = 'com.example.app:/callback';

/** The text a person reads on a page: its markup and spacing left out. */
const readable = (html: string): string =>
  html
    .replace(/<[^>]*>/g, ' ')
    .replace(/&#39;/g, "'")
    .replace(/&amp;/g, '&')
    .replace(/\s+/g, ' ')
    .replace(/ ([.,:])/g, '$1');

/** What the consent page tells a person before they allow an application access to their account. */
for (const dialect of DIALECTS) {
  describe(`consent page (${dialect})`, () => {
    let server: TestServer;
    let client: { id: string };
    let developers: { id: string };
    const user = { email: 'ada@example.com', password: 'correct horse battery' };

    before(async () => {
      server = await startTestServer(dialect);
      // The base URL is the developer's word; the redirect URI is where the browser actually goes.
      client = await server.client({
        name: 'Company Portal',
        type: 'public',
        baseUrl: 'https://company.example',
        grantTypes: ['authorization_code'],
        scopes: ['objects:read'],
        redirectUris: [CALLBACK, NATIVE_CALLBACK],
      });
      const developer = await server.user('dev@studio.example', 'another horse battery');
      developers = await server.client({ name: 'Studio Sync', ownerUserId: developer.id, grantTypes: ['authorization_code'], scopes: ['objects:read'], redirectUris: [CALLBACK] });
      await server.user(user.email, user.password);
    });
    after(() => server.close());

    /** The consent page a person reaches, signed in, for an authorization request of the client sending them back to `redirectUri`. */
    async function consentPage(redirectUri: string, of = client): Promise<string> {
      const browser = new HttpBrowser();
      const query = new URLSearchParams({ response_type: 'code', client_id: of.id, redirect_uri: redirectUri, scope: 'objects:read', state: 's', code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256' });
      const login = await browser.follow(`${server.url}/authorize?${query}`, server.url);
      const page = await browser.follow(`${server.url}/login`, server.url, { form: { csrf: hiddenField(login.text, 'csrf'), request: hiddenField(login.text, 'request'), ...user } });
      assert.equal(page.status, 200, page.text.slice(0, 300));
      assert.match(page.text, /wants to access your account/);
      return readable(page.text);
    }

    it('says where the person will be sent whichever they choose: the redirect URI’s origin, not the base URL the developer gave', async () => {
      const web = await consentPage(CALLBACK);
      assert.match(web, /Whether you allow or deny, you will be sent to https:\/\/app\.example\./);
      const native = await consentPage(NATIVE_CALLBACK);
      assert.match(native, /Whether you allow or deny, you will be sent to the app on your device that opens com\.example\.app links\./);
    });

    it('says who manages the application, a developer or the operators, and does not give out the developer’s address', async () => {
      const byDeveloper = await consentPage(CALLBACK, developers);
      assert.match(byDeveloper, /Managed by a developer on this platform, not by its operators\./);
      assert.doesNotMatch(byDeveloper, /dev@studio\.example/);
      assert.match(await consentPage(CALLBACK), /Managed by the operators of this service\./);
    });
  });
}
