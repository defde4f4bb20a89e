import { sql, type Kysely } from 'kysely';
import type { Dialect } from '../database.ts';
import { COLUMNS, type Database } from '../schema.ts';
import type { AuditRepository } from '../repositories/audit.ts';
import type { RevocationRepository } from '../repositories/revocations.ts';

export function kyselyAudit(db: Kysely<Database>, dialect: Dialect): AuditRepository {
  return {
    async append(events) {
      if (events.length === 0) return;
      await db
        .insertInto('audit_events')
        .values(
          events.map((e) => ({
            at: e.at,
            kind: e.kind,
            outcome: e.outcome,
            client_id: e.clientId,
            user_id: e.userId,
            data: JSON.stringify(e.data),
          })),
        )
        .execute();
    },
    async query(filter) {
      const read = async (db: Kysely<Database>) => {
        // Newest by time, not by id: events are buffered per instance, so batches land out of time order.
        let query = db.selectFrom('audit_events').select(COLUMNS.audit_events);
        if (filter.since !== undefined) query = query.where('at', '>=', filter.since);
        if (filter.until !== undefined) query = query.where('at', '<', filter.until);
        if (filter.clientId !== undefined) {
          // With a user, the client is checked on the user's events (a few) instead of looked up in the
          // index of clients' events: the one plan made for every client and user intersected the two
          // indexes, and so read every event of a client that has millions (57 to 630 ms for 800k).
          // Appending '' hides the column from that index and changes no answer.
          query = filter.userId === undefined ? query.where('client_id', '=', filter.clientId) : query.where(sql<boolean>`client_id || '' = ${filter.clientId}`);
        }
        if (filter.userId !== undefined) query = query.where('user_id', '=', filter.userId);
        if (filter.kind !== undefined) query = query.where('kind', '=', filter.kind);
        // The indexes end with the time: PostgreSQL reads them from the page's second down and sorts
        // the events of each second by id (SQLite's end with the rowid, which is the id: no sort), so a
        // page reads its first second whole, however many events share it. Ending the indexes with the
        // id would spare that at the price of indexes more than twice the size (the many events of one
        // second, client or kind no longer deduplicate: 79 MB became 186 MB for 600k events) and of
        // time on every write (1 to 10 %), on the token endpoint's path.
        const order = filter.oldestFirst === true ? 'asc' : 'desc';
        if (filter.after !== undefined) query = query.where(sql<boolean>`(at, id) ${sql.raw(order === 'asc' ? '>' : '<')} (${filter.after.at}, ${filter.after.id})`);
        return query.orderBy('at', order).orderBy('id', order).limit(Math.max(1, Math.min(filter.limit ?? 100, 1001))).execute();
      };
      // On PostgreSQL, planned for the values asked for rather than once per connection (see
      // openDatabase): a filter's selectivity differs by orders of magnitude from one value to the
      // next (a kind seen once a month, `token.issued`). The generic plan guesses one in as many values
      // as there are, and with a page's time bound it read a kind's events through the index of time,
      // filtering the whole log on the way back for a rare kind (seconds over millions, see 008).
      const rows =
        dialect === 'postgres'
          ? await db.transaction().execute(async (trx) => {
              await sql`set local plan_cache_mode = force_custom_plan`.execute(trx);
              return read(trx);
            })
          : await read(db);
      return rows.map((row) => ({
        id: Number(row.id),
        at: row.at,
        kind: row.kind,
        outcome: row.outcome === 'success' ? 'success' : 'failure',
        clientId: row.client_id,
        userId: row.user_id,
        data: JSON.parse(row.data) as Record<string, unknown>,
      }));
    },
  };
}

export function kyselyRevocations(db: Kysely<Database>): RevocationRepository {
  return {
    async revokeJti(jti, expiresAt) {
      await db
        .insertInto('revoked_tokens')
        .values({ jti, expires_at: expiresAt })
        .onConflict((oc) => oc.column('jti').doNothing())
        .execute();
    },
    async isJtiRevoked(jti) {
      return (await db.selectFrom('revoked_tokens').select('jti').where('jti', '=', jti).executeTakeFirst()) !== undefined;
    },
    async isAnyJtiRevoked(jtis) {
      if (jtis.length === 0) return false;
      return (await db.selectFrom('revoked_tokens').select('jti').where('jti', 'in', [...jtis]).limit(1).executeTakeFirst()) !== undefined;
    },
  };
}
