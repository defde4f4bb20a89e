import type { ClientPowers } from '../repositories.ts';
import { flag, toJson } from './json.ts';

/**
 * A client's powers as its row stores them (the same admin flag, the same scopes in the same
 * order, the same impersonation and resource-server flags): what a conditional write on a client, or on one of its
 * credentials, compares in the statement that makes it (ClientPowers). Scopes are stored as
 * toJson writes them, so the same list is the same text in both dialects.
 */
export const storedPowers = (expected: ClientPowers) => ({
  is_admin: flag(expected.isAdmin),
  scopes: toJson(expected.scopes),
  allow_impersonation: flag(expected.allowImpersonation),
  is_resource_server: flag(expected.isResourceServer),
});
