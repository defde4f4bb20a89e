import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { consentRequired, loginRequired, OAuthError } from '../../src/core/errors.ts';

describe('OpenID Connect authentication errors (Core §3.1.2.6)', () => {
  it('are OAuthErrors with their RFC code and status 400, as every error sent back through the redirect', () => {
    for (const [make, code] of [
      [loginRequired, 'login_required'],
      [consentRequired, 'consent_required'],
    ] as const) {
      const error = make('the user is "not" signed in');
      assert.ok(error instanceof OAuthError);
      assert.equal(error.error, code);
      assert.equal(error.status, 400);
      assert.deepEqual(error.headers, {});
      assert.deepEqual(error.toJSON(), { error: code, error_description: "the user is 'not' signed in" });
    }
  });
});
