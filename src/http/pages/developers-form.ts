import { checkBackchannelLogoutUri, checkRedirectUri } from '../../core/client-validation.ts';
import { ValidationError } from '../../core/validation.ts';
import type { Client } from '../../storage/repositories/clients.ts';
import { field } from './context.ts';
import { sentence } from './developers-context.ts';

const MAX_REDIRECT_URIS = 20;
const MAX_URL_LENGTH = 2000;
const MAX_DESCRIPTION_LENGTH = 1000;
/** Form fields that can carry a message; anything else the core refuses is shown above the form. */
const FORM_FIELDS = ['name', 'description', 'type', 'base_url', 'redirect_uris', 'backchannel_logout_uri'] as const;

/**
 * The fields of an application a developer can set, as typed into the form: the creation form
 * (with `type`) and the application page's settings form (without it) share them.
 */
export interface ApplicationDetailsForm {
  name: string;
  description: string;
  base_url: string;
  redirect_uris: string;
  backchannel_logout_uri: string;
  /** The checkbox: ticked or not. */
  backchannel_logout_session_required: boolean;
}

/** The checked details, in the shape of the core's ClientInput. */
export interface ApplicationDetails {
  name: string;
  description: string;
  baseUrl: string | null;
  redirectUris: string[];
  backchannelLogoutUri: string | null;
  backchannelLogoutSessionRequired: boolean;
}

export type FieldErrors = Record<string, string>;

/** Reads the detail fields of a posted form, and nothing else. */
export function readApplicationDetails(body: unknown): ApplicationDetailsForm {
  return {
    name: field(body, 'name')?.trim() ?? '',
    description: field(body, 'description')?.trim() ?? '',
    base_url: field(body, 'base_url')?.trim() ?? '',
    redirect_uris: field(body, 'redirect_uris') ?? '',
    backchannel_logout_uri: field(body, 'backchannel_logout_uri')?.trim() ?? '',
    backchannel_logout_session_required: field(body, 'backchannel_logout_session_required') === 'on',
  };
}

/**
 * Runs one check, recording a ValidationError's message under its field (the first one wins), so
 * a form shows all its problems at once. Undefined when the check failed.
 */
export function collect<T>(errors: FieldErrors, work: () => T): T | undefined {
  try {
    return work();
  } catch (error) {
    if (!(error instanceof ValidationError)) throw error;
    errors[error.field] ??= sentence(error.message);
    return undefined;
  }
}

/** What an application holds now, kept as it is on a save (as the core keeps it), whatever today's rules say. */
export type HeldDetails = Pick<Client, 'description' | 'baseUrl' | 'redirectUris' | 'backchannelLogoutUri'>;

const NOTHING_HELD: HeldDetails = { description: '', baseUrl: null, redirectUris: [], backchannelLogoutUri: null };

/**
 * Checks the detail fields; undefined (with `errors` filled in) when any is wrong. `held`: the
 * application as it is, on the settings form. A value it holds passes unchecked, as the core lets
 * it pass (validateClient): an operator may have registered one the portal refuses, or an earlier
 * version accepted one today's rules refuse, and the developer must still be able to save the
 * other fields. Only what is typed anew is checked: a new URI, a description or base URL changed,
 * a list of redirect URIs over the portal's limit that grows.
 */
export function checkApplicationDetails(values: ApplicationDetailsForm, errors: FieldErrors, held: HeldDetails = NOTHING_HELD): ApplicationDetails | undefined {
  collect(errors, () => {
    if (!values.name) throw new ValidationError('name', 'give the application a name');
    if (values.name.length > 200) throw new ValidationError('name', 'the name is longer than 200 characters');
  });
  collect(errors, () => {
    if (values.description !== held.description && values.description.length > MAX_DESCRIPTION_LENGTH) {
      throw new ValidationError('description', `the description is longer than ${MAX_DESCRIPTION_LENGTH} characters`);
    }
  });
  const baseUrl = collect(errors, () => (!values.base_url ? null : values.base_url === held.baseUrl ? values.base_url : checkBaseUrl(values.base_url)));
  const redirectUris = collect(errors, () => {
    const uris = [...new Set(values.redirect_uris.split(/\r?\n/).map((line) => line.trim()).filter((line) => line !== ''))];
    const added = uris.filter((uri) => !held.redirectUris.includes(uri));
    if (uris.length === 0) throw new ValidationError('redirect_uris', 'enter at least one redirect URI');
    if (uris.length > MAX_REDIRECT_URIS && added.length > 0) throw new ValidationError('redirect_uris', `enter at most ${MAX_REDIRECT_URIS} redirect URIs`);
    for (const uri of added) {
      if (uri.length > MAX_URL_LENGTH) throw new ValidationError('redirect_uris', 'a redirect URI is too long');
      // The rule every registration follows (admin API and command line too), checked here so the
      // form shows it next to the field along with the form's other problems.
      checkRedirectUri('redirect_uris', uri);
    }
    return uris;
  });
  const uri = values.backchannel_logout_uri;
  // The core's rule for a developer's URI (no plain http, nothing on Gatehouse's own network),
  // checked here too so that the form shows it next to the field with the form's other problems.
  const backchannelLogoutUri = collect(errors, () => (uri === '' ? null : uri === held.backchannelLogoutUri ? uri : checkBackchannelLogoutUri(uri, 'developer')));
  if (baseUrl === undefined || redirectUris === undefined || backchannelLogoutUri === undefined || Object.keys(errors).length > 0) return undefined;
  return {
    name: values.name,
    description: values.description,
    baseUrl,
    redirectUris,
    backchannelLogoutUri,
    backchannelLogoutSessionRequired: values.backchannel_logout_session_required,
  };
}

/** Where a form shows a ValidationError the core raised: next to its field, or above the form. */
export function formError(error: ValidationError): FieldErrors {
  const key = (FORM_FIELDS as readonly string[]).includes(error.field) ? error.field : 'form';
  return { [key]: sentence(error.message) };
}

function checkBaseUrl(value: string): string {
  if (value.length > MAX_URL_LENGTH) throw new ValidationError('base_url', 'the base URL is too long');
  const url = URL.parse(value);
  if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:')) throw new ValidationError('base_url', 'the base URL must be an http or https address, such as https://app.example.com');
  return value;
}

/**
 * The settings form carries the details it was filled in with, in a hidden field, so that a save
 * writes only the fields typed over (see the settings route): an operator's change of another field
 * while the form was open is kept. Undefined for a form without it (from before it had one): such a
 * save writes every field, as it did; a field that is there but unreadable is `malformed`.
 */
export function readFormBase(body: unknown): ApplicationDetailsForm | undefined | 'malformed' {
  const encoded = field(body, 'was');
  if (encoded === undefined) return undefined;
  try {
    const base = JSON.parse(Buffer.from(encoded, 'base64url').toString('utf8')) as Record<string, unknown>;
    const texts = { name: base.name, description: base.description, base_url: base.base_url, redirect_uris: base.redirect_uris, backchannel_logout_uri: base.backchannel_logout_uri ?? '' };
    // A form shown before it had the back-channel fields posts them empty and unticked: as it was filled in.
    const required = base.backchannel_logout_session_required ?? false;
    if (!Object.values(texts).every((value) => typeof value === 'string') || typeof required !== 'boolean') return 'malformed';
    return { ...(texts as Omit<ApplicationDetailsForm, 'backchannel_logout_session_required'>), backchannel_logout_session_required: required };
  } catch {
    return 'malformed';
  }
}

export const encodeFormBase = (values: ApplicationDetailsForm): string =>
  Buffer.from(
    JSON.stringify({
      name: values.name,
      description: values.description,
      base_url: values.base_url,
      redirect_uris: values.redirect_uris,
      backchannel_logout_uri: values.backchannel_logout_uri,
      backchannel_logout_session_required: values.backchannel_logout_session_required,
    }),
  ).toString('base64url');
