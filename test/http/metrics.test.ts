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
  const value = (text: string, series: string) => Number(new RegExp(`^${series.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);

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
    assert.match(text, /^# TYPE gatehouse_http_request_duration_seconds histogram$/m);
    assert.match(text, /^gatehouse_db_pool_total \d+/m);
    assert.match(text, /^gatehouse_process_resident_memory_bytes \d+/m);
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
