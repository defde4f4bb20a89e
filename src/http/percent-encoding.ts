/**
 * Whether a query string or form body is percent-encoded UTF-8 throughout (RFC 3986 §2.1, §2.5;
 * WHATWG URL §5.1). fast-querystring, like the WHATWG parser, keeps a malformed escape (`%zz`, `a%2`,
 * a lone `%`) or one that decodes to no UTF-8 (`%ff`) as the literal text: a server reading it so
 * would act on another value than the client sent — a `state` sent back as other bytes, a code or
 * secret read as something the client never held.
 */
export const isWellEncoded = (text: string): boolean => {
  if (!text.includes('%')) return true;
  try {
    decodeURIComponent(text);
    return true;
  } catch {
    return false;
  }
};
