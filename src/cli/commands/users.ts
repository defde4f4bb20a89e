import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { createUser, setUserDisabled } from '../../core/applications.ts';
import type { Gatehouse } from '../../gatehouse.ts';
import { recordCliAction } from '../audit-trail.ts';
import { argumentsOf, isoTime, table, UsageError, type Output } from '../output.ts';

export const userUsage = `gatehouse user create --email EMAIL [--password PASSWORD | --password-stdin] [--name NAME] [--json]
gatehouse user list [--json]
gatehouse user disable USER_ID|EMAIL [--json]`;

export async function userCommand(gatehouse: Gatehouse, args: string[], out: Output): Promise<void> {
  const [sub, ...rest] = args;
  const now = gatehouse.clock();
  switch (sub) {
    case 'create': {
      const { values } = parseArgs({ args: rest, options: { email: { type: 'string' }, password: { type: 'string' }, 'password-stdin': { type: 'boolean' }, name: { type: 'string' }, json: { type: 'boolean' } } });
      if (!values.email) throw new UsageError('user create needs --email');
      if (values.password !== undefined && values['password-stdin']) throw new UsageError('user create takes --password or --password-stdin, not both');
      const given = values['password-stdin'] ? await passwordFromStdin() : values.password;
      const generated = given === undefined ? randomBytes(12).toString('base64url') : undefined;
      const user = await createUser(gatehouse.storage, { email: values.email, password: given ?? generated!, name: values.name ?? '' }, now);
      recordCliAction(gatehouse, 'user.created', { userId: user.id });
      out.print(generated ? { id: user.id, email: user.email, password: generated } : { id: user.id, email: user.email }, () =>
        [`id:    ${user.id}`, `email: ${user.email}`, ...(generated ? [`password: ${generated}   (generated; shown once)`] : [])].join('\n'),
      );
      return;
    }
    case 'list': {
      argumentsOf('user list', rest, []);
      const users = await gatehouse.storage.users.list();
      out.print(
        users.map((u) => ({ id: u.id, email: u.email, name: u.name, disabled: u.disabledAt !== null, created_at: isoTime(u.createdAt) })),
        () => table([['ID', 'EMAIL', 'NAME', 'STATUS'], ...users.map((u) => [u.id, u.email, u.name || '-', u.disabledAt === null ? 'active' : 'disabled'])]),
      );
      return;
    }
    case 'disable': {
      const [key] = argumentsOf('user disable', rest, ['USER_ID|EMAIL']) as [string];
      const user = (await gatehouse.storage.users.findById(key)) ?? (await gatehouse.storage.users.findByEmail(key));
      if (!user) throw new Error(`no user ${key}`);
      await setUserDisabled(gatehouse, user, true, now);
      recordCliAction(gatehouse, 'user.disabled', { userId: user.id });
      out.print({ id: user.id, email: user.email, disabled: true }, () => `disabled ${user.email}: it can no longer sign in or refresh tokens, and its applications are suspended`);
      return;
    }
    default:
      throw new UsageError(`unknown user command "${sub ?? ''}"`);
  }
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
