import type { GrantHandler } from '../token-endpoint.ts';
import { authorizationCodeGrant } from './authorization-code.ts';
import { clientCredentialsGrant } from './client-credentials.ts';
import { passwordGrant } from './password.ts';
import { refreshTokenGrant } from './refresh-token.ts';
import { tokenExchangeGrant } from './token-exchange.ts';

/** The built-in grants, registered through the same call as a custom grant. */
export const builtInGrants: readonly GrantHandler<any>[] = [clientCredentialsGrant, authorizationCodeGrant, passwordGrant, refreshTokenGrant, tokenExchangeGrant];
