import { createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { field } from './context.ts';

/**
 * Forms that make something (an application, a secret, an API key) are answered with the page that
 * shows its credential, so the browser's Reload, or Back then Reload, sends the form again. Each
 * such form carries an id of its own (`form_id`, new on every page), and what it makes gets an id
 * derived from it: sent again, the form names a record that is there already, and nothing more is
 * made (AlreadyCreatedError when both arrive at once; the id's primary key settles it). What was
 * made is then shown without its credential, which was shown once.
 */

const FORM_ID = /^[A-Za-z0-9_-]{22}$/;

export const newFormId = (): string => randomBytes(16).toString('base64url');

/** The posted form's id; a new one for a form without one (from a page shown before forms had it), which then makes a record each time. */
export const formIdOf = (body: unknown): string => {
  const posted = field(body, 'form_id');
  return posted !== undefined && FORM_ID.test(posted) ? posted : newFormId();
};

/**
 * Derives ids from form ids. Keyed with the master secret, so nobody can choose the id of what
 * they make; `scope` (the developer, or the application) keeps one form id from naming another's record.
 * Each gives the ids a form's record may have: the one it is made with now, under the master
 * secret, then those it was made with under each previous one (`previousSecrets`). While the secret
 * changes, a form shown before is still accepted (csrfProtection), and sent again from the page that
 * showed what it made, it must find that record rather than make a second one.
 */
export function formRecordIds(secret: string, previousSecrets: readonly string[] = []) {
  const keys = [secret, ...previousSecrets].map((each) => Buffer.from(hkdfSync('sha256', each, 'gatehouse', 'portal-form-records', 32)));
  const digests = (kind: string, scope: string, formId: string) => keys.map((key) => createHmac('sha256', key).update(`${kind}\0${scope}\0${formId}`).digest());
  return {
    /** Client ids, like createClient's own: `app_` and 24 hex digits. */
    client: (developerId: string, formId: string): string[] => digests('client', developerId, formId).map((digest) => `app_${digest.toString('hex').slice(0, 24)}`),
    /** Record ids in the form of a UUID (version 8, RFC 9562 §5.8), as secrets and API keys have. */
    credential: (kind: 'secret' | 'api-key', clientId: string, formId: string): string[] =>
      digests(kind, clientId, formId).map((digest) => {
        const bytes = digest.subarray(0, 16);
        bytes[6] = (bytes[6]! & 0x0f) | 0x80;
        bytes[8] = (bytes[8]! & 0x3f) | 0x80;
        const hex = bytes.toString('hex');
        return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
      }),
  };
}

export type FormRecordIds = ReturnType<typeof formRecordIds>;
