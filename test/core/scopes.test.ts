import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/core/config.ts';
import { ScopePolicy } from '../../src/core/scopes.ts';

const policy = new ScopePolicy(loadConfig({ GATEHOUSE_SECRET: 'x'.repeat(32), DATABASE_URL: 'postgres://unused' }).scopes);
const viewer = { scopes: ['objects:read', 'objects:download', 'model:read'], defaultScopes: ['objects:read', 'objects:download'], isAdmin: false };
const backOffice = { scopes: ['admin:clients', 'admin:users'], defaultScopes: ['admin:clients', 'admin:users'], isAdmin: true };

describe('scope policy', () => {
  it('grants the requested scopes when the client holds them', () => {
    assert.deepEqual(policy.resolve({ requested: ['model:read'], client: viewer, userPresent: false }), ['model:read']);
  });

  it('grants the defaults that fit when nothing is requested, leaving user-only scopes out without a user', () => {
    assert.deepEqual(policy.resolve({ requested: undefined, client: viewer, userPresent: false }), ['objects:read']);
    assert.deepEqual(policy.resolve({ requested: undefined, client: viewer, userPresent: true }), ['objects:read', 'objects:download']);
  });

  it('refuses a user-only scope without a user', () => {
    assert.throws(() => policy.resolve({ requested: ['objects:download'], client: viewer, userPresent: false }), { error: 'invalid_scope' });
  });

  it('refuses unknown scopes and scopes the client was not allowed', () => {
    assert.throws(() => policy.resolve({ requested: ['nope'], client: viewer, userPresent: true }), { error: 'invalid_scope', message: /unknown scope/ });
    assert.throws(() => policy.resolve({ requested: ['bcf:write'], client: viewer, userPresent: true }), { error: 'invalid_scope', message: /not allowed/ });
  });

  it('keeps admin scopes to admin clients and admin clients to admin scopes', () => {
    assert.throws(() => policy.resolve({ requested: ['admin:users'], client: { ...viewer, scopes: [...viewer.scopes, 'admin:users'] }, userPresent: false }), { error: 'invalid_scope' });
    assert.throws(() => policy.resolve({ requested: ['objects:read'], client: { ...backOffice, scopes: [...backOffice.scopes, 'objects:read'] }, userPresent: false }), { error: 'invalid_scope' });
    assert.deepEqual(policy.resolve({ requested: undefined, client: backOffice, userPresent: false }), ['admin:clients', 'admin:users']);
    assert.match(policy.checkClientScopes(['admin:users', 'objects:read'], true) ?? '', /admin client/);
    assert.equal(policy.checkClientScopes(['admin:users'], true), undefined);
  });

  it('never widens past a ceiling', () => {
    assert.throws(() => policy.resolve({ requested: ['model:read'], client: viewer, userPresent: true, ceiling: ['objects:read'] }), { error: 'invalid_scope' });
  });

  it('parses the scope parameter per RFC 6749 §3.3', () => {
    assert.equal(policy.parse(undefined), undefined);
    assert.equal(policy.parse(''), undefined);
    assert.deepEqual(policy.parse('a b a'), ['a', 'b']);
    for (const malformed of [' a', 'a  b', 'a\tb', 'a"b', 'a\\b', 'é']) {
      assert.throws(() => policy.parse(malformed), { error: 'invalid_scope' }, JSON.stringify(malformed));
    }
  });
});
