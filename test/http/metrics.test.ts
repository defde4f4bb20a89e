import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

describe('Prometheus metrics', () => {
  let server: TestServer;
  let client: { id: string; secret: string };

  before(async () => {
    server = await startTestServer('postgres');
    client = await server.client({});
  });
  after(() => server.close());

  const scrape = async () => {
    const res = await fetch(`${server.url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
    return res.text();
  };
  const value = (text: string, series: string) => Number(new RegExp(`^${series.replace(/[{}"]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);

  it('counts tokens issued by grant type and errors by code', async () => {
    const before = await scrape();
    await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(client.id, client.secret) } });
    await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(client.id, 'wrong') } });
    const after = await scrape();
    assert.equal(value(after, 'gatehouse_tokens_issued_total{grant_type="client_credentials"}') - value(before, 'gatehouse_tokens_issued_total{grant_type="client_credentials"}'), 1);
    assert.equal(value(after, 'gatehouse_oauth_errors_total{error="invalid_client"}') - value(before, 'gatehouse_oauth_errors_total{error="invalid_client"}'), 1);
  });

  it('has latency histograms per endpoint, labelled by route pattern, and the database pool', async () => {
    await fetch(`${server.url}/projects/secret-project-name/access-tokens`, { method: 'POST' });
    const text = await scrape();
    assert.match(text, /gatehouse_http_request_duration_seconds_bucket\{le="0.005",route="\/token",method="POST",status="2xx"\}/);
    assert.match(text, /route="\/projects\/:projectId\/access-tokens"/);
    assert.doesNotMatch(text, /secret-project-name/, 'raw URLs never become label values');
    assert.match(text, /^gatehouse_db_pool_total \d+/m);
    assert.match(text, /^gatehouse_process_resident_memory_bytes \d+/m);
  });
});
