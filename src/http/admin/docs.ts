import type { OpenApiDocument, OpenApiOperation } from './openapi.ts';

type Json = Record<string, unknown>;

const escape = (value: unknown): string =>
  String(value).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** Escapes, then renders the little Markdown the descriptions use: `code` and **strong**. */
const prose = (value: unknown): string =>
  escape(value)
    .replace(/`([^`]+)`/g, '<code>$1</code>')
    .replace(/\*\*([^*]+)\*\*/g, '<strong>$1</strong>');

/**
 * The admin API's reference page, rendered on the server from the OpenAPI document: every
 * operation with its method, path, scope, parameters, body fields and responses. Plain HTML and
 * the product's stylesheet; no script.
 */
export function renderReference(document: OpenApiDocument, problems: Record<string, { status: number; title: string; explanation: string }>): string {
  const operations = Object.entries(document.paths).flatMap(([path, methods]) => Object.entries(methods).map(([method, op]) => ({ path, method: method.toUpperCase(), op })));
  const scopes = (((document.components.securitySchemes.adminToken as Json).flows as Json).clientCredentials as { scopes: Record<string, string>; tokenUrl: string }) ?? { scopes: {}, tokenUrl: '' };
  const html: string[] = [];
  html.push(`<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="referrer" content="no-referrer">
  <title>Admin API reference · Gatehouse</title>
  <link rel="stylesheet" href="/static/gatehouse.css">
  <link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
</head>
<body>
  <header class="brand"><span class="brand-name"><span class="brand-mark" aria-hidden="true">◆</span> Gatehouse</span></header>
  <main class="card">
  <div class="portal">
  <h1>${escape(document.info.title)}</h1>
  <p class="lead">${prose(document.info.description)}</p>
  <p>Server: <code>${escape(document.servers[0]?.url ?? '')}</code> · OpenAPI ${escape(document.openapi)} document: <a href="openapi.json">openapi.json</a></p>
  <h2 id="authentication">Authentication</h2>
  <p>Get a token for an admin client with the client credentials grant at <code>${escape(scopes.tokenUrl)}</code>, then send it as <code>Authorization: Bearer &lt;token&gt;</code>. Each operation names the scope it needs:</p>
  <ul>${Object.entries(scopes.scopes)
    .map(([scope, description]) => `<li><code>${escape(scope)}</code> — ${prose(description)}</li>`)
    .join('')}</ul>
  <p>Without a valid token: <code>401</code> (<a href="#problem-invalid-token">invalid-token</a>). A user’s token, an API key, a non-admin client’s token or a token without the scope: <code>403</code> (<a href="#problem-insufficient-scope">insufficient-scope</a>).</p>
  <h2 id="operations">Operations</h2>
  <ul>${operations.map(({ path, method, op }) => `<li><a href="#op-${escape(op.operationId)}"><code>${method} ${escape(path)}</code></a> — ${escape(op.summary)}</li>`).join('')}</ul>`);

  for (const tag of document.tags) {
    html.push(`<h2 id="tag-${escape(slug(tag.name))}">${escape(tag.name)}</h2>`);
    for (const { path, method, op } of operations.filter((o) => o.op.tags.includes(tag.name))) html.push(renderOperation(path, method, op, document));
  }

  html.push(`<h2 id="schemas">Schemas</h2>`);
  for (const [name, schema] of Object.entries(document.components.schemas)) {
    html.push(`<section class="portal-section" id="schema-${escape(name)}"><h3>${escape(name)}</h3>${schema.description ? `<p>${prose(schema.description)}</p>` : ''}${fieldTable(schema)}</section>`);
  }

  html.push(`<h2 id="problems">Problems</h2><p>Errors are <code>application/problem+json</code> (RFC 9457): <code>type</code>, <code>title</code>, <code>status</code>, <code>detail</code>, and for invalid input <code>errors</code>, a list of <code>{"field", "detail"}</code>.</p>`);
  for (const [kind, problem] of Object.entries(problems)) {
    html.push(`<section class="portal-section" id="problem-${escape(kind)}"><h3>${problem.status} ${escape(kind)}</h3><p>${escape(problem.title)}. ${prose(problem.explanation)}</p></section>`);
  }
  html.push(`  </div>\n  </main>\n</body>\n</html>\n`);
  return html.join('\n');
}

function renderOperation(path: string, method: string, op: OpenApiOperation, document: OpenApiDocument): string {
  const scope = op.security[0] ? Object.values(op.security[0])[0]?.join(' ') : undefined;
  const parts = [
    `<section class="portal-section" id="op-${escape(op.operationId)}">`,
    `<h3><span class="badge">${method}</span> <code>${escape(path)}</code></h3>`,
    `<p><strong>${escape(op.summary)}</strong>${op.description ? ` ${prose(op.description)}` : ''}</p>`,
    `<p>${scope ? `Scope: <code>${escape(scope)}</code>` : 'Public: no token needed.'}</p>`,
  ];
  if (op.parameters?.length) {
    parts.push(
      `<h4>Parameters</h4><dl class="facts">${op.parameters
        .map((p) => `<dt><code>${escape(p.name)}</code></dt><dd>${[`${p.in}`, typeOf(p.schema), p.required ? 'required' : 'optional', p.description ? prose(p.description) : ''].filter(Boolean).join(' · ')}</dd>`)
        .join('')}</dl>`,
    );
  }
  if (op.requestBody) {
    const schema = resolve(op.requestBody.content['application/json'].schema, document);
    parts.push(`<h4>Request body${op.requestBody.required ? '' : ' (optional)'}</h4><p>JSON; unknown fields are refused.</p>${fieldTable(schema)}`);
  }
  parts.push(
    `<h4>Responses</h4><ul class="rows">${Object.entries(op.responses)
      .map(([status, response]) => {
        const ref = typeof response.$ref === 'string' ? response.$ref : undefined;
        const resolved = ref ? (document.components.responses[ref.split('/').pop()!] as Json) : response;
        const content = resolved.content as Record<string, { schema?: Json }> | undefined;
        const [type, media] = content ? Object.entries(content)[0]! : [undefined, undefined];
        return `<li class="row"><span class="row-main"><code>${escape(status)}</code> ${prose(resolved.description)}${type ? ` <code>${escape(type)}</code>` : ''}${media?.schema && type !== 'application/problem+json' ? `: ${typeOf(media.schema)}` : ''}</span></li>`;
      })
      .join('')}</ul>`,
  );
  parts.push('</section>');
  return parts.join('\n');
}

function fieldTable(schema: Json): string {
  const properties = (schema.properties ?? {}) as Record<string, Json>;
  const required = (schema.required ?? []) as string[];
  if (Object.keys(properties).length === 0) return '';
  return `<dl class="facts">${Object.entries(properties)
    .map(([name, property]) => {
      const notes = [property.description ? prose(property.description) : '', property.default !== undefined ? `Default: <code>${escape(JSON.stringify(property.default))}</code>.` : '']
        .filter(Boolean)
        .join(' ');
      return `<dt><code>${escape(name)}</code></dt><dd>${[typeOf(property), required.includes(name) ? 'required' : 'optional', notes].filter(Boolean).join(' · ')}</dd>`;
    })
    .join('')}</dl>`;
}

function typeOf(schema: Json): string {
  if (typeof schema.$ref === 'string') {
    const name = schema.$ref.split('/').pop()!;
    return `<a href="#schema-${escape(name)}">${escape(name)}</a>`;
  }
  if (Array.isArray(schema.enum)) return `one of ${schema.enum.map((v) => `<code>${escape(v)}</code>`).join(', ')}`;
  const types = Array.isArray(schema.type) ? (schema.type as string[]) : typeof schema.type === 'string' ? [schema.type] : [];
  const label = types
    .map((type) => {
      if (type === 'array' && schema.items && typeof schema.items === 'object') return `array of ${typeOf(schema.items as Json)}`;
      if (type === 'string' && typeof schema.format === 'string') return `string (${escape(schema.format)})`;
      // A wrapper such as {"clients": [...]}: name its members.
      const members = Object.entries((schema.properties ?? {}) as Record<string, Json>);
      if (type === 'object' && members.length > 0 && members.length <= 3) return `{ ${members.map(([name, member]) => `<code>${escape(name)}</code>: ${typeOf(member)}`).join(', ')} }`;
      return escape(type);
    })
    .join(' | ');
  return label || 'any';
}

function resolve(schema: Json, document: OpenApiDocument): Json {
  return typeof schema.$ref === 'string' ? (document.components.schemas[schema.$ref.split('/').pop()!] ?? {}) : schema;
}

const slug = (value: string): string => value.toLowerCase().replace(/[^a-z0-9]+/g, '-');
