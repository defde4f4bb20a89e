import http from 'node:http';

/*
 * One HTTP request exactly as the caller writes it (no fetch normalisation of methods, headers or
 * bodies), for the fuzz and abuse tests.
 */

export interface RawAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

export interface RawHttpRequest {
  /** POST when not given. */
  method?: string;
  path: string;
  /** Sent as given: no Content-Length is added here. */
  headers?: http.OutgoingHttpHeaders;
  body?: string | Buffer;
}

/**
 * One request over a connection of its own, answered within 15 s. The server may answer (413, 431)
 * and close before the whole request is written; the answer counts.
 */
export function sendRaw(baseUrl: string, init: RawHttpRequest): Promise<RawAnswer> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    let settled = false;
    const request = http.request({ hostname, port, method: init.method ?? 'POST', path: init.path, headers: init.headers, agent: false, timeout: 15_000 }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        settled = true;
        resolve({ status: response.statusCode ?? 0, headers: response.headers, text: Buffer.concat(chunks).toString('utf8') });
      });
      response.on('error', (error) => settled || reject(error));
    });
    request.on('timeout', () => request.destroy(new Error('no answer within 15 s')));
    request.on('error', (error) => settled || reject(error));
    request.end(init.body);
  });
}
