import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { HttpBrowser, signedInBrowser } from '../support/browser.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

const CALLBACK = 'https://viewer.example/callback';

describe('Prometheus metrics', () => {
  let server: TestServer;
  let client: { id: string; secret: string };

  before(async () => {
    server = await startTestServer('postgres', { config: { implicit: { enabled: true } } });
    client = await server.client({});
  });
  after(() => server.close());

  const scrape = async () => {
    const res = await fetch(`${server.url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
    return res.text();
  };
  const value = (text: string, series: string) => Number(new RegExp(`^${series.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);

  it('counts tokens issued by grant type and errors by code', async () => {
    const before = await scrape();
    await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(client.id, client.secret) } });
    await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(client.id, 'wrong') } });
    const after = await scrape();
    assert.equal(value(after, 'gatehouse_tokens_issued_total{grant_type="client_credentials"}') - value(before, 'gatehouse_tokens_issued_total{grant_type="client_credentials"}'), 1);
    assert.equal(value(after, 'gatehouse_oauth_errors_total{error="invalid_client"}') - value(before, 'gatehouse_oauth_errors_total{error="invalid_client"}'), 1);
  });

  it('counts the authorization endpoint’s error responses by code, and the tokens of the implicit flow, which it issues', async () => {
    const viewer = await server.client({ name: 'Viewer', grantTypes: ['implicit', 'authorization_code'], scopes: ['objects:read'], redirectUris: [CALLBACK], firstParty: true });
    await server.user('metrics@example.com', 'a long enough password');
    const browser = new HttpBrowser();
    const authorize = (params: Record<string, string>) => browser.request(`${server.url}/authorize?${new URLSearchParams({ client_id: viewer.id, redirect_uri: CALLBACK, state: 's', ...params })}`);
    const answered = (location: string | undefined) => {
      const url = new URL(location!);
      return new URLSearchParams(url.hash ? url.hash.slice(1) : url.search);
    };
    const before = await scrape();

    // Signed out: prompt=none is login_required, at the redirect URI; an unknown scope is invalid_scope.
    assert.equal(answered((await authorize({ response_type: 'code', scope: 'objects:read', prompt: 'none', code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256' })).location).get('error'), 'login_required');
    assert.equal(answered((await authorize({ response_type: 'token', scope: 'no:such' })).location).get('error'), 'invalid_scope');
    // Signed in: a token in the fragment.
    await signedInBrowser(server.url, 'metrics@example.com', 'a long enough password', browser);
    assert.ok(answered((await authorize({ response_type: 'token', scope: 'objects:read' })).location).get('access_token'));

    const after = await scrape();
    const delta = (series: string) => value(after, series) - value(before, series);
    assert.equal(delta('gatehouse_oauth_errors_total{error="login_required"}'), 1);
    assert.equal(delta('gatehouse_oauth_errors_total{error="invalid_scope"}'), 1);
    assert.equal(delta('gatehouse_tokens_issued_total{grant_type="implicit"}'), 1);
  });

  it('has latency histograms per endpoint, labelled by route pattern, and the database pool', async () => {
    await fetch(`${server.url}/projects/secret-project-name/access-tokens`, { method: 'POST' });
    const text = await scrape();
    assert.match(text, /gatehouse_http_request_duration_seconds_bucket\{le="0.005",route="\/token",method="POST",status="2xx"\}/);
    assert.match(text, /route="\/projects\/:projectId\/access-tokens"/);
    assert.doesNotMatch(text, /secret-project-name/, 'raw URLs never become label values');
    assert.match(text, /^# TYPE gatehouse_http_request_duration_seconds histogram$/m);
    assert.match(text, /^gatehouse_db_pool_connections \d+/m);
    assert.match(text, /^gatehouse_process_resident_memory_bytes \d+/m);
  });

  it('names its own metrics by the Prometheus conventions: counters, and only counters, end in _total; durations in _seconds; each has help', async () => {
    const text = await scrape();
    const types = new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
    // prom-client's process and Node.js metrics (under the gatehouse_ prefix) are its own to name.
    const own = [...types].filter(([name]) => !/^gatehouse_(process|nodejs)_/.test(name));
    assert.ok(own.length >= 6, `${own.length} metrics of its own`);
    for (const [name, type] of own) {
      assert.equal(name.endsWith('_total'), type === 'counter', `${name} is a ${type}`);
      if (type === 'histogram') assert.match(name, /_seconds$/, name);
      assert.match(text, new RegExp(`^# HELP ${name} \\S`, 'm'), `${name} has help`);
    }
  });

  it('counts every request of a series in its cumulative buckets, its count and its sum', async () => {
    const series = 'route="/token",method="POST",status="4xx"';
    const before = await scrape();
    for (let i = 0; i < 3; i++) await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(client.id, 'wrong') } });
    const after = await scrape();
    const delta = (name: string) => value(after, name) - value(before, name);
    assert.equal(delta(`gatehouse_http_request_duration_seconds_count{${series}}`), 3);
    assert.equal(delta(`gatehouse_http_request_duration_seconds_bucket{le="+Inf",${series}}`), 3);
    const sum = delta(`gatehouse_http_request_duration_seconds_sum{${series}}`);
    assert.ok(sum > 0 && sum < 3, `sum ${sum}`);
    const buckets = [...after.matchAll(new RegExp(`^gatehouse_http_request_duration_seconds_bucket\\{le="([^"]+)",${series}\\} (\\S+)$`, 'gm'))].map((m) => [m[1]!, Number(m[2])] as const);
    assert.equal(buckets.length, 13);
    assert.deepEqual(buckets.map(([le]) => le).slice(-2), ['2.5', '+Inf']);
    buckets.forEach(([, count], i) => assert.ok(i === 0 || count >= buckets[i - 1]![1], 'buckets are cumulative'));
  });
});
