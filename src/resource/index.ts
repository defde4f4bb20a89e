/**
 * The resource-server SDK: protect an API with what Gatehouse issues.
 *
 *   import { createAuthenticator, fastifyGatehouse } from 'gatehouse/resource';
 */
export { createAuthenticator, type Authenticator, type AuthenticatorOptions, type Principal, type RequestLike } from './authenticator.ts';
export { ResourceError } from './errors.ts';
export { expressGatehouse, fastifyGatehouse } from './middleware.ts';
