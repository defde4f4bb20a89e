import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Eta } from 'eta';
import type { FastifyReply } from 'fastify';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const viewsDir = resolve(root, 'views');
export const publicDir = resolve(root, 'public');

// Escaping is on for every `<%= %>`; raw output (`<%~ %>`) is kept to the layout's body and includes.
const eta = new Eta({ views: viewsDir, autoEscape: true, cache: true });

/** Renders a page of the product: the view inside the layout, with the page's CSRF token at hand. */
export function renderPage(reply: FastifyReply, view: string, data: Record<string, unknown>, status = 200): FastifyReply {
  const html = renderView(view, { csrf: reply.request.csrfToken ?? '', ...data });
  return reply.code(status).type('text/html; charset=utf-8').send(html);
}

/** The HTML of a page, for answers written before there is a request to reply to (a page without forms). */
export function renderView(view: string, data: Record<string, unknown>): string {
  return eta.render(view, { csrf: '', ...data });
}
