import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { createUser, deleteUser, describeUser, resetUserPassword, setUserDisabled, signOutUser, updateUser, type UserPatch } from '../../core/users.ts';
import { describeSession, LISTED_SESSIONS } from '../../core/sessions.ts';
import type { Gatehouse } from '../../gatehouse.ts';
import type { User } from '../../storage/repositories/users.ts';
import { recordCliAction } from '../audit-trail.ts';
import { nextPageLine, pagedListOptions, readPage } from '../paging.ts';
import { argumentsOf, exactly, isoTime, printable, table, UsageError, type Output, type Run } from '../output.ts';

export const userUsage = `gatehouse user create --email EMAIL [--password PASSWORD | --password-stdin] [--name NAME] [--json]
gatehouse user list [--limit N] [--cursor CURSOR] [--json]
                        oldest first, 100 at a time unless --limit says (at most 1000); the next page's --cursor is printed after
gatehouse user show USER_ID|EMAIL [--json]
gatehouse user update USER_ID|EMAIL [--name NAME] [--email EMAIL] [--email-verified | --no-email-verified] [--json]
                        changes only what is given; a new email is not verified unless --email-verified says so
gatehouse user disable USER_ID|EMAIL [--json]
gatehouse user enable USER_ID|EMAIL [--json]
gatehouse user set-password USER_ID|EMAIL (--password PASSWORD | --password-stdin) [--json]
                        a new password; signs the user out everywhere
gatehouse user sessions USER_ID|EMAIL [--json]   the user's live sessions, newest first (at most ${LISTED_SESSIONS})
gatehouse user sign-out USER_ID|EMAIL [--json]   ends every session of the user
gatehouse user delete USER_ID|EMAIL [--json]     with their grants and the applications they registered`;

export async function userCommand(args: string[]): Promise<Run> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'create': {
      const { values } = parseArgs({ args: rest, options: { email: { type: 'string' }, password: { type: 'string' }, 'password-stdin': { type: 'boolean' }, name: { type: 'string' }, json: { type: 'boolean' } } });
      const email = values.email;
      if (!email) throw new UsageError('user create needs --email');
      if (values.password !== undefined && values['password-stdin']) throw new UsageError('user create takes --password or --password-stdin, not both');
      const given = values['password-stdin'] ? await passwordFromStdin() : values.password;
      return async (gatehouse, out) => {
        const generated = given === undefined ? randomBytes(12).toString('base64url') : undefined;
        const user = await createUser(gatehouse.storage, { email, password: given ?? generated!, name: values.name ?? '' }, gatehouse.clock());
        recordCliAction(gatehouse, 'user.created', { userId: user.id });
        out.print(generated ? { id: user.id, email: user.email, password: generated } : { id: user.id, email: user.email }, () =>
          [`id:    ${user.id}`, `email: ${user.email}`, ...(generated ? [`password: ${generated}   (generated; shown once)`] : [])].join('\n'),
        );
      };
    }
    case 'list': {
      const { page } = pagedListOptions('user list', 'users', rest);
      return async (gatehouse, out) => {
        const { records: users, next } = await readPage('users', page, (read) => gatehouse.storage.users.list(read));
        out.print(
          users.map((u) => ({ id: u.id, email: u.email, name: u.name, disabled: u.disabledAt !== null, created_at: isoTime(u.createdAt) })),
          () => table([['ID', 'EMAIL', 'NAME', 'STATUS'], ...users.map((u) => [u.id, u.email, u.name || '-', u.disabledAt === null ? 'active' : 'disabled'])]),
        );
        // After the page, for people; on stderr with --json, which stays the array of the page's records.
        if (next !== null) (out.json ? process.stderr : process.stdout).write(`${nextPageLine('user list', page, next)}\n`);
      };
    }
    case 'show': {
      const [key] = argumentsOf('user show', rest, ['USER_ID|EMAIL']) as [string];
      return async (gatehouse, out) => printUser(await findUser(gatehouse, key), out);
    }
    case 'update':
      return userUpdateCommand(rest);
    case 'disable':
    case 'enable': {
      const disabled = sub === 'disable';
      const [key] = argumentsOf(`user ${sub}`, rest, ['USER_ID|EMAIL']) as [string];
      return async (gatehouse, out) => {
        const user = await findUser(gatehouse, key);
        await setUserDisabled(gatehouse, user, disabled, gatehouse.clock());
        recordCliAction(gatehouse, `user.${sub}d`, { userId: user.id });
        out.print({ id: user.id, email: user.email, disabled }, () =>
          disabled
            ? `disabled ${user.email}: it can no longer sign in or refresh tokens, and its applications are suspended`
            : `enabled ${user.email}: it can sign in again, and its applications work again`,
        );
      };
    }
    case 'set-password': {
      const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { password: { type: 'string' }, 'password-stdin': { type: 'boolean' }, json: { type: 'boolean' } } });
      const [key] = exactly('user set-password', positionals, ['USER_ID|EMAIL']) as [string];
      if (values.password !== undefined && values['password-stdin']) throw new UsageError('user set-password takes --password or --password-stdin, not both');
      if (values.password === undefined && !values['password-stdin']) throw new UsageError('user set-password needs --password PASSWORD or --password-stdin');
      const password = values['password-stdin'] ? await passwordFromStdin() : values.password!;
      return async (gatehouse, out) => {
        const user = await findUser(gatehouse, key);
        if (!(await resetUserPassword(gatehouse, user.id, password, gatehouse.clock(), { via: 'cli' }))) throw new Error(`no user ${key}`);
        recordCliAction(gatehouse, 'user.password_reset', { userId: user.id });
        out.print({ id: user.id, email: user.email, signed_out: true }, () => `set the password of ${user.email}, and signed them out everywhere: their grants to applications stay`);
      };
    }
    case 'sessions': {
      const [key] = argumentsOf('user sessions', rest, ['USER_ID|EMAIL']) as [string];
      return async (gatehouse, out) => {
        const user = await findUser(gatehouse, key);
        const sessions = (await gatehouse.sessions.listForUser(user.id, gatehouse.clock())).map(describeSession);
        // As GET /admin/v1/users/{id}/sessions answers: the browsers signed in, never a cookie or its digest.
        out.print(sessions, () =>
          sessions.length === 0
            ? `${printable(user.email)} is signed in nowhere`
            : table([
                ['SID', 'DEVICE', 'ADDRESS', 'SIGNED IN', 'LAST USED', 'EXPIRES'],
                ...sessions.map((s) => [s.sid ?? '-', s.device ?? '-', s.address ?? '-', s.created_at, s.last_used_at ?? '-', s.expires_at]),
              ]),
        );
      };
    }
    case 'sign-out': {
      const [key] = argumentsOf('user sign-out', rest, ['USER_ID|EMAIL']) as [string];
      return async (gatehouse, out) => {
        const user = await findUser(gatehouse, key);
        await signOutUser(gatehouse, user.id);
        recordCliAction(gatehouse, 'user.signed_out', { userId: user.id });
        out.print({ id: user.id, email: user.email, signed_out: true }, () => `signed ${user.email} out everywhere: their password and their grants to applications stay`);
      };
    }
    case 'delete': {
      const [key] = argumentsOf('user delete', rest, ['USER_ID|EMAIL']) as [string];
      return async (gatehouse, out) => {
        const user = await findUser(gatehouse, key);
        const deleted = await deleteUser(gatehouse, user.id);
        if (!deleted) throw new Error(`no user ${key}`);
        recordCliAction(gatehouse, 'user.deleted', { userId: user.id, data: { client_ids: deleted.clientIds } });
        out.print({ deleted: user.id, email: user.email, client_ids: deleted.clientIds }, () =>
          [
            `deleted ${user.email} with their sessions, consents, grants and refresh tokens`,
            ...(deleted.clientIds.length > 0 ? [`and the applications they registered: ${deleted.clientIds.join(', ')}`] : []),
          ].join('\n'),
        );
      };
    }
    default:
      throw new UsageError(`unknown user command "${sub ?? ''}"`);
  }
}

const userUpdateOptions = {
  name: { type: 'string' },
  email: { type: 'string' },
  'email-verified': { type: 'boolean' },
  'no-email-verified': { type: 'boolean' },
  json: { type: 'boolean' },
} as const;

/**
 * `user update`: the change made by the core's updateUser — the function behind the admin API's
 * PATCH /admin/v1/users/{id}, so that a change is validated, refused or made alike from either: an
 * email another user has is refused, a new email is not verified unless the same call says it is,
 * and the verification and password reset links sent to the old address stop working. Audited as `user.updated` with
 * the fields given, named as in the admin API.
 */
function userUpdateCommand(args: string[]): Run {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: userUpdateOptions });
  const [key] = exactly('user update', positionals, ['USER_ID|EMAIL']) as [string];
  if (values['email-verified'] && values['no-email-verified']) throw new UsageError('user update takes --email-verified or --no-email-verified, not both');
  const emailVerified = values['email-verified'] ? true : values['no-email-verified'] ? false : undefined;
  const patch: UserPatch = { name: values.name, email: values.email, emailVerified };
  const fields = [values.name !== undefined && 'name', values.email !== undefined && 'email', emailVerified !== undefined && 'email_verified'].filter((field) => field !== false);
  if (fields.length === 0) throw new UsageError('user update needs something to change, such as --name NAME or --email-verified');
  return async (gatehouse, out) => {
    const user = await findUser(gatehouse, key);
    const updated = await updateUser(gatehouse, user.id, patch, gatehouse.clock(), { via: 'cli' });
    if (!updated) throw new Error(`no user ${key}`);
    recordCliAction(gatehouse, 'user.updated', { userId: updated.id, data: { fields } });
    printUser(updated, out);
  };
}

/** A user as the admin API describes one: a line a field for people, null or empty printed as a dash. */
function printUser(user: User, out: Output): void {
  const described = describeUser(user);
  out.print(described, () => Object.entries(described).map(([k, v]) => `${k.padEnd(15)} ${v === null || v === '' ? '-' : printable(String(v))}`).join('\n'));
}

/** The user with this id, or else this email (matched as sign-in matches it); an error naming `key` when there is none. */
export async function findUser(gatehouse: Gatehouse, key: string): Promise<User> {
  const user = (await gatehouse.storage.users.findById(key)) ?? (await gatehouse.storage.users.findByEmail(key));
  if (!user) throw new Error(`no user ${key}`);
  return user;
}

/** Longer than any password an account may have: standard input is read no further. */
const MAX_STDIN = 4096;

/**
 * `--password-stdin`: the password is read from standard input, so it is not on the command line,
 * where every user of the machine can read it in the process list (and the shell keeps it in its
 * history). One line; its line break is not part of the password.
 */
async function passwordFromStdin(): Promise<string> {
  let text = '';
  for await (const chunk of process.stdin.setEncoding('utf8')) {
    text += chunk as string;
    if (text.length > MAX_STDIN) throw new UsageError(`--password-stdin read more than ${MAX_STDIN} characters`);
  }
  const password = text.replace(/\r?\n$/, '');
  if (password === '') throw new UsageError('--password-stdin read no password from standard input');
  if (/[\r\n]/.test(password)) throw new UsageError('--password-stdin takes one line: the password');
  return password;
}
