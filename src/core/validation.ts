/** A request to make or change a record (a client, a user, an API key) was refused; `field` names what was wrong. */
export class ValidationError extends Error {
  override name = 'ValidationError';
  readonly code = 'ERR_VALIDATION';
  readonly field: string;
  constructor(field: string, message: string) {
    super(message);
    this.field = field;
  }
}
