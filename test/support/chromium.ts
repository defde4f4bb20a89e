import { chromium, type Browser, type Page } from 'playwright-core';

/** Debian's chromium, headless, without the background traffic and sandbox a test machine cannot use. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/**
 * The focused field's id and what describes it to a screen reader (the text of its
 * aria-describedby). Browsers apply `autofocus` when they next render after the page has loaded,
 * not at load: this waits for the focus to leave the body first, so a page that focuses nothing
 * fails here, after the timeout.
 */
export async function focusedField(page: Page): Promise<{ id: string | undefined; description: string | undefined }> {
  // Both functions run in the page, where document is the browser's (this file is typed for Node).
  await page.waitForFunction(() => {
    const doc = (globalThis as unknown as { document: { activeElement: unknown; body: unknown } }).document;
    return doc.activeElement !== null && doc.activeElement !== doc.body;
  }, undefined, { timeout: 5_000 });
  return page.evaluate(() => {
    const doc = (globalThis as unknown as { document: { activeElement: { id: string; getAttribute(name: string): string | null } | null; getElementById(id: string): { textContent: string } | null } }).document;
    const field = doc.activeElement;
    const described = field?.getAttribute('aria-describedby');
    return { id: field?.id, description: described ? (doc.getElementById(described)?.textContent ?? undefined) : undefined };
  });
}
