/** PostgreSQL's foreign_key_violation, or SQLite's SQLITE_CONSTRAINT_FOREIGNKEY (as node:sqlite reports it). */
export function isForeignKeyViolation(error: unknown): boolean {
  const { code, errcode } = (error ?? {}) as { code?: unknown; errcode?: unknown };
  return code === '23503' || errcode === 787;
}
