#!/usr/bin/env -S node --max-semi-space-size=16
// The CLI entry point: the compiled command line (built by `npm ci` through the prepare script).
// The Node option is SERVER_NODE_OPTIONS (src/cli/runtime.ts), for `gatehouse serve`.
import '../dist/cli/main.js';
