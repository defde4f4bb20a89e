/**
 * Node options for a serving process. V8 grows its young generation up to 128 MB under a burst of
 * token requests and never gives it back; capped at 2 × 16 MB, the resident size after such a
 * burst stays near 170 MB instead of near 250 MB, for no measurable loss of throughput. V8 reads
 * this only at start-up, so it is on the command line of every way Gatehouse is served: `npm
 * start`, the `gatehouse` executable and the worker processes of `serve --workers N`.
 */
export const SERVER_NODE_OPTIONS = ['--max-semi-space-size=16'] as const;
