/*
 * Checks an answer against an OpenAPI 3.1 document: its status must be one the operation
 * documents, its content type the one documented for that status, and its body must fit the
 * documented schema. The schema checker knows the keywords the admin API's document uses and
 * refuses any other, so that a schema it cannot read fails the test instead of passing unchecked.
 */

type Json = Record<string, unknown>;

export interface OpenApi {
  paths: Record<string, Record<string, { operationId: string; responses: Record<string, Json>; parameters?: Json[]; requestBody?: Json; security?: Json[] }>>;
  components: { schemas: Record<string, Json>; responses: Record<string, Json> };
}

export interface Answer {
  status: number;
  contentType: string | null;
  text: string;
  /** Response headers, for those the document marks required; left out, they are not checked. */
  headers?: Headers;
}

// Keywords that say something about the value, and those that only describe it.
const CHECKED = new Set(['$ref', 'type', 'enum', 'format', 'properties', 'required', 'additionalProperties', 'items', 'minLength', 'maxLength', 'minimum', 'maximum', 'minItems', 'maxItems']);
const ANNOTATIONS = new Set(['title', 'description', 'default']);

/**
 * What is wrong with `value` as an instance of `schema`, one line each; none when it fits. Stricter
 * than JSON Schema in one way: a member of an object that the schema does not name is reported
 * unless `additionalProperties` allows it, since a client reading the document cannot know it.
 */
export function schemaViolations(schema: Json, value: unknown, document: OpenApi, at = '$'): string[] {
  for (const keyword of Object.keys(schema)) {
    if (!CHECKED.has(keyword) && !ANNOTATIONS.has(keyword)) throw new Error(`${at}: the checker does not know the keyword "${keyword}"; teach it before relying on it`);
  }
  if (typeof schema.$ref === 'string') {
    const name = /^#\/components\/schemas\/(.+)$/.exec(schema.$ref)?.[1];
    const target = name === undefined ? undefined : document.components.schemas[name];
    if (!target) return [`${at}: ${schema.$ref} does not resolve`];
    return schemaViolations(target, value, document, at);
  }
  if (schema.type !== undefined) {
    const types = [schema.type].flat() as string[];
    if (!types.some((type) => isOfType(type, value))) return [`${at}: ${kindOf(value)} where the document says ${types.join(' or ')}`];
  }
  const problems: string[] = [];
  if (Array.isArray(schema.enum) && !schema.enum.some((allowed) => JSON.stringify(allowed) === JSON.stringify(value))) problems.push(`${at}: ${JSON.stringify(value)} is not one of ${JSON.stringify(schema.enum)}`);
  if (typeof value === 'string') {
    if (schema.format === 'date-time' && !isDateTime(value)) problems.push(`${at}: ${JSON.stringify(value)} is not an RFC 3339 date-time`);
    if (schema.format === 'uri' && !URL.canParse(value)) problems.push(`${at}: ${JSON.stringify(value)} is not a URI`);
    if (typeof schema.minLength === 'number' && [...value].length < schema.minLength) problems.push(`${at}: shorter than ${schema.minLength}`);
    if (typeof schema.maxLength === 'number' && [...value].length > schema.maxLength) problems.push(`${at}: longer than ${schema.maxLength}`);
  }
  if (typeof value === 'number') {
    if (typeof schema.minimum === 'number' && value < schema.minimum) problems.push(`${at}: below ${schema.minimum}`);
    if (typeof schema.maximum === 'number' && value > schema.maximum) problems.push(`${at}: above ${schema.maximum}`);
  }
  if (Array.isArray(value)) {
    if (typeof schema.minItems === 'number' && value.length < schema.minItems) problems.push(`${at}: fewer than ${schema.minItems} items`);
    if (typeof schema.maxItems === 'number' && value.length > schema.maxItems) problems.push(`${at}: more than ${schema.maxItems} items`);
    if (schema.items && typeof schema.items === 'object') value.forEach((item, i) => problems.push(...schemaViolations(schema.items as Json, item, document, `${at}[${i}]`)));
  }
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const properties = (schema.properties ?? {}) as Record<string, Json>;
    for (const name of (schema.required ?? []) as string[]) if (!Object.hasOwn(value, name)) problems.push(`${at}: the required member "${name}" is missing`);
    for (const [name, member] of Object.entries(value)) {
      if (Object.hasOwn(properties, name)) problems.push(...schemaViolations(properties[name]!, member, document, `${at}.${name}`));
      else if (schema.additionalProperties && typeof schema.additionalProperties === 'object') problems.push(...schemaViolations(schema.additionalProperties as Json, member, document, `${at}.${name}`));
      else if (schema.additionalProperties !== true) problems.push(`${at}: the member "${name}" is not in the document`);
    }
  }
  return problems;
}

/** The documented response of an operation for a status, its `$ref` resolved; undefined when the status is not documented. */
export function documentedResponse(document: OpenApi, method: string, path: string, status: number): Json | undefined {
  const operation = document.paths[path]?.[method.toLowerCase()];
  if (!operation) throw new Error(`the document has no operation ${method} ${path}`);
  const response = operation.responses[String(status)];
  if (!response || typeof response.$ref !== 'string') return response;
  const name = /^#\/components\/responses\/(.+)$/.exec(response.$ref)?.[1];
  const target = name === undefined ? undefined : document.components.responses[name];
  if (!target) throw new Error(`${response.$ref} does not resolve`);
  return target;
}

/** What is wrong with `answer` as an answer of the operation `method path` (a path as the document writes it); none when it is as documented. */
export function answerViolations(document: OpenApi, method: string, path: string, answer: Answer): string[] {
  const response = documentedResponse(document, method, path, answer.status);
  if (!response) return [`${answer.status} is not among the documented answers (${Object.keys(document.paths[path]![method.toLowerCase()]!.responses).join(', ')})`];
  const missing = Object.entries((response.headers ?? {}) as Record<string, { required?: boolean }>)
    .filter(([name, header]) => header.required && answer.headers && !answer.headers.has(name))
    .map(([name]) => `${answer.status} comes without the header ${name} the document says it has`);
  const content = response.content as Record<string, { schema?: Json }> | undefined;
  if (missing.length > 0) return missing;
  if (!content) return answer.text === '' ? [] : [`${answer.status} is documented without a body, and has one`];
  const media = (answer.contentType ?? '').split(';')[0]!.trim().toLowerCase();
  const documented = content[media];
  if (!documented) return [`${answer.status} comes as ${media || 'no content type'}, documented as ${Object.keys(content).join(' or ')}`];
  if (!documented.schema) return [];
  if (!/^application\/(.+\+)?json$/.test(media)) return schemaViolations(documented.schema, answer.text, document);
  let body: unknown;
  try {
    body = JSON.parse(answer.text);
  } catch {
    return [`${answer.status} comes as ${media} and is not JSON: ${answer.text.slice(0, 100)}`];
  }
  return schemaViolations(documented.schema, body, document);
}

function isOfType(type: string, value: unknown): boolean {
  switch (type) {
    case 'string':
      return typeof value === 'string';
    case 'boolean':
      return typeof value === 'boolean';
    case 'integer':
      return Number.isInteger(value);
    case 'number':
      return typeof value === 'number' && Number.isFinite(value);
    case 'null':
      return value === null;
    case 'array':
      return Array.isArray(value);
    case 'object':
      return value !== null && typeof value === 'object' && !Array.isArray(value);
    default:
      throw new Error(`the checker does not know the type "${type}"`);
  }
}

const kindOf = (value: unknown): string => (value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value} (${JSON.stringify(value)?.slice(0, 60)})`);

// RFC 3339 §5.6, as JSON Schema's date-time format has it.
const isDateTime = (value: string): boolean => /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i.test(value) && !Number.isNaN(Date.parse(value));
