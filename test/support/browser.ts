/**
 * A browser without a browser: real HTTP with a cookie jar, manual redirects and form submission,
 * for driving the login and consent pages in tests that check protocol details.
 */
export class HttpBrowser {
  readonly cookies = new Map<string, string>();

  /**
   * `crossSite`: the request comes from another site's page (an application's form post), so the
   * browser sends none of Gatehouse's cookies (all `SameSite=Lax`), yet keeps those the answer sets.
   */
  async request(url: string, init: { method?: string; form?: Record<string, string> | [string, string][]; headers?: Record<string, string>; crossSite?: boolean } = {}) {
    const headers: Record<string, string> = { ...init.headers };
    if (this.cookies.size > 0 && !init.crossSite) headers.cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    let body: string | undefined;
    if (init.form) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      body = new URLSearchParams(init.form).toString();
    }
    const response = await fetch(url, { method: init.method ?? (init.form ? 'POST' : 'GET'), headers, body, redirect: 'manual' });
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const index = pair!.indexOf('=');
      const name = pair!.slice(0, index);
      const value = pair!.slice(index + 1);
      if (/max-age=0|expires=thu, 01 jan 1970/i.test(line) || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    const text = await response.text();
    return { status: response.status, location: response.headers.get('location') ?? undefined, headers: response.headers, text };
  }

  /** Follows redirects within `origin`; stops at the first response that is not a redirect, or that leaves it. */
  async follow(url: string, origin: string, init: { form?: Record<string, string> | [string, string][] } = {}) {
    let response = await this.request(url, init);
    let current = url;
    for (let hops = 0; hops < 10 && response.location; hops++) {
      const next = new URL(response.location, current).toString();
      if (!next.startsWith(origin)) return { ...response, location: next };
      current = next;
      response = await this.request(next);
    }
    return { ...response, url: current };
  }
}

/** The value of a hidden input on a page. */
export function hiddenField(html: string, name: string): string {
  const match = new RegExp(`name="${name}" value="([^"]*)"`).exec(html);
  if (!match) throw new Error(`no hidden field ${name} on the page:\n${html.slice(0, 2000)}`);
  return match[1]!.replace(/&amp;/g, '&').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>');
}

/**
 * A browser behind the trusted proxy at `address` that names itself `userAgent`, on every request:
 * what a session records of where it was signed in (its address and its browser's name).
 */
export class ProxiedBrowser extends HttpBrowser {
  readonly #headers: Record<string, string>;
  constructor(address: string, userAgent: string) {
    super();
    this.#headers = { 'x-forwarded-for': address, 'user-agent': userAgent };
  }
  override request(url: string, init: Parameters<HttpBrowser['request']>[1] = {}) {
    return super.request(url, { ...init, headers: { ...this.#headers, ...init.headers } });
  }
}

/**
 * A browser signed in as `email` through the sign-in page of the server at `baseUrl`, as a person
 * signs in: a new one, or `browser` (as another tab signing in again: a session it had ends, and a
 * new one starts).
 */
export async function signedInBrowser(baseUrl: string, email: string, password: string, browser = new HttpBrowser()): Promise<HttpBrowser> {
  const form = await browser.request(`${baseUrl}/login`);
  const answer = await browser.request(`${baseUrl}/login`, { form: { csrf: hiddenField(form.text, 'csrf'), email, password } });
  if (answer.status !== 303) throw new Error(`signing in as ${email} answered ${answer.status}:\n${answer.text.slice(0, 300)}`);
  return browser;
}

/**
 * A code for the first-party client `clientId` (no consent asked), issued through the browser's
 * session by the authorization endpoint of the server at `baseUrl`, for `scope`; not yet exchanged.
 */
export async function codeThrough(browser: HttpBrowser, baseUrl: string, clientId: string, redirectUri: string, scope = 'openid profile'): Promise<string> {
  const query = new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: redirectUri, scope, state: 's' });
  const page = await browser.follow(`${baseUrl}/authorize?${query}`, baseUrl);
  const code = page.location === undefined ? null : new URL(page.location).searchParams.get('code');
  if (!code) throw new Error(`no code for ${clientId}, answered ${page.status}:\n${page.text.slice(0, 300)}`);
  return code;
}
