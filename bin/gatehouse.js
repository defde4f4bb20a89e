#!/usr/bin/env node
// The CLI entry point: the compiled command line (built by `npm ci` through the prepare script).
import '../dist/cli/main.js';
