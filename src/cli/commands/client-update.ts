import { parseArgs } from 'node:util';
import { updateClient, type ClientPatch } from '../../core/applications.ts';
import type { ClientType } from '../../storage/repositories/clients.ts';
import { recordCliAction } from '../audit-trail.ts';
import { exactly, UsageError, type Run } from '../output.ts';
import { printClient, readJwks, words } from './client-support.ts';

export const clientUpdateUsage = `gatehouse client update CLIENT_ID [--name NAME] [--type confidential|public] [--grant TYPE]... [--scope "a b"]
                        [--default-scope "a b"] [--redirect-uri URI... | --no-redirect-uri]
                        [--post-logout-redirect-uri URI... | --no-post-logout-redirect-uri]
                        [--base-url URL | --no-base-url] [--description TEXT] [--jwks FILE | --no-jwks]
                        [--admin | --no-admin] [--first-party | --no-first-party] [--impersonation | --no-impersonation]
                        [--resource-server | --no-resource-server]
                        [--backchannel-logout-uri URI | --no-backchannel-logout-uri]
                        [--backchannel-logout-session-required | --no-backchannel-logout-session-required] [--json]
                        changes only what is given; a list given replaces the list`;

const options = {
  name: { type: 'string' },
  description: { type: 'string' },
  type: { type: 'string' },
  grant: { type: 'string', multiple: true },
  scope: { type: 'string' },
  'default-scope': { type: 'string' },
  'redirect-uri': { type: 'string', multiple: true },
  'no-redirect-uri': { type: 'boolean' },
  'post-logout-redirect-uri': { type: 'string', multiple: true },
  'no-post-logout-redirect-uri': { type: 'boolean' },
  'base-url': { type: 'string' },
  'no-base-url': { type: 'boolean' },
  jwks: { type: 'string' },
  'no-jwks': { type: 'boolean' },
  admin: { type: 'boolean' },
  'no-admin': { type: 'boolean' },
  'first-party': { type: 'boolean' },
  'no-first-party': { type: 'boolean' },
  impersonation: { type: 'boolean' },
  'no-impersonation': { type: 'boolean' },
  'resource-server': { type: 'boolean' },
  'no-resource-server': { type: 'boolean' },
  'backchannel-logout-uri': { type: 'string' },
  'no-backchannel-logout-uri': { type: 'boolean' },
  'backchannel-logout-session-required': { type: 'boolean' },
  'no-backchannel-logout-session-required': { type: 'boolean' },
  json: { type: 'boolean' },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof options; allowPositionals: true }>>['values'];

/**
 * `client update`: the change the options ask for, made by the core's updateClient — the function
 * behind the admin API's PATCH /admin/v1/clients/{id}, so that a change is refused or made alike
 * from either. Audited as `client.updated` with the fields changed, named as in the admin API.
 */
export function clientUpdateCommand(args: string[]): Run {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options });
  const [id] = exactly('client update', positionals, ['CLIENT_ID']) as [string];
  const { patch, fields } = patchOf(values);
  if (fields.length === 0) throw new UsageError('client update needs something to change, such as --name NAME or --no-admin');
  return async (gatehouse, out) => {
    const updated = await updateClient(gatehouse, id, patch, gatehouse.clock());
    if (!updated) throw new Error(`no client ${id}`);
    recordCliAction(gatehouse, 'client.updated', { clientId: id, data: { fields } });
    await printClient(gatehouse, updated.client, out, updated.secret);
  };
}

/** The patch the options make, and the admin API's names of the fields it changes. */
function patchOf(values: Values): { patch: ClientPatch; fields: string[] } {
  const patch: ClientPatch = {};
  const fields: string[] = [];
  const set = <K extends keyof ClientPatch>(field: string, key: K, value: ClientPatch[K] | undefined): void => {
    if (value === undefined) return;
    patch[key] = value;
    fields.push(field);
  };
  /** What an option and its --no- form ask for: `off` for the latter; a usage error for both. */
  const either = <T, Off>(name: keyof Values & string, given: T | undefined, off: Off): T | Off | undefined => {
    const negated = values[`no-${name}` as keyof Values] === true;
    if (negated && given !== undefined) throw new UsageError(`client update takes --${name} or --no-${name}, not both`);
    return negated ? off : given;
  };
  set('name', 'name', values.name);
  set('description', 'description', values.description);
  set('type', 'type', values.type as ClientType | undefined);
  set('grant_types', 'grantTypes', values.grant);
  set('scopes', 'scopes', values.scope === undefined ? undefined : words(values.scope));
  set('default_scopes', 'defaultScopes', values['default-scope'] === undefined ? undefined : words(values['default-scope']));
  set('redirect_uris', 'redirectUris', either('redirect-uri', values['redirect-uri'], []));
  set('post_logout_redirect_uris', 'postLogoutRedirectUris', either('post-logout-redirect-uri', values['post-logout-redirect-uri'], []));
  set('base_url', 'baseUrl', either('base-url', values['base-url'], null));
  const jwksFile = either('jwks', values.jwks, null);
  set('jwks', 'jwks', typeof jwksFile === 'string' ? readJwks(jwksFile) : jwksFile);
  set('admin', 'isAdmin', either('admin', values.admin, false));
  set('first_party', 'firstParty', either('first-party', values['first-party'], false));
  set('impersonation', 'allowImpersonation', either('impersonation', values.impersonation, false));
  set('resource_server', 'isResourceServer', either('resource-server', values['resource-server'], false));
  set('backchannel_logout_uri', 'backchannelLogoutUri', either('backchannel-logout-uri', values['backchannel-logout-uri'], null));
  set('backchannel_logout_session_required', 'backchannelLogoutSessionRequired', either('backchannel-logout-session-required', values['backchannel-logout-session-required'], false));
  return { patch, fields };
}
