import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createOpaqueToken, digestOf, isWellFormed, kindOf } from '../../src/core/tokens/opaque.ts';

describe('opaque credentials', () => {
  it('carry a prefix naming their kind, 256 random bits and a checksum', () => {
    const token = createOpaqueToken('rt');
    assert.match(token, /^gate_rt_[A-Za-z0-9_-]{49}$/);
    assert.equal(kindOf(token), 'rt');
    assert.ok(isWellFormed(token, 'rt'));
    assert.notEqual(createOpaqueToken('rt'), token);
  });

  it('name a password reset link as such (gate_pr_), refused as any other kind', () => {
    const link = createOpaqueToken('pr');
    assert.match(link, /^gate_pr_[A-Za-z0-9_-]{49}$/);
    assert.equal(kindOf(link), 'pr');
    assert.ok(isWellFormed(link, 'pr'));
    assert.equal(isWellFormed(link, 'ss'), false);
    assert.equal(isWellFormed(createOpaqueToken('ss'), 'pr'), false);
  });

  it('name an email verification link as such (gate_ev_), refused as a password reset link and the reverse', () => {
    const link = createOpaqueToken('ev');
    assert.match(link, /^gate_ev_[A-Za-z0-9_-]{49}$/);
    assert.equal(kindOf(link), 'ev');
    assert.ok(isWellFormed(link, 'ev'));
    assert.equal(isWellFormed(link, 'pr'), false);
    assert.equal(isWellFormed(createOpaqueToken('pr'), 'ev'), false);
  });

  it('are refused as another kind', () => {
    const secret = createOpaqueToken('cs');
    assert.equal(isWellFormed(secret, 'rt'), false);
    assert.equal(isWellFormed(secret.replace('gate_cs_', 'gate_rt_'), 'rt'), false, 'the checksum covers the prefix');
  });

  it('are refused when one character is changed, so typos never reach the database', () => {
    const token = createOpaqueToken('ak');
    for (const position of [9, 20, 40, token.length - 1]) {
      const c = token[position]!;
      const changed = token.slice(0, position) + (c === 'A' ? 'B' : 'A') + token.slice(position + 1);
      assert.equal(isWellFormed(changed, 'ak'), false, `position ${position}`);
    }
  });

  it('are refused when the value is not a string or has the wrong length', () => {
    for (const value of [undefined, null, 42, '', 'gate_rt_', createOpaqueToken('rt') + 'x', { toString: () => 'x' }]) {
      assert.equal(isWellFormed(value, 'rt'), false);
    }
  });

  it('are stored as a SHA-256 digest that differs per token', () => {
    const a = createOpaqueToken('cs');
    assert.equal(digestOf(a), digestOf(a));
    assert.notEqual(digestOf(a), digestOf(createOpaqueToken('cs')));
    assert.equal(Buffer.from(digestOf(a), 'base64url').length, 32);
  });
});
