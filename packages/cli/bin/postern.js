#!/usr/bin/env node
// Committed launcher, so that `npm ci` can link the `postern` command before the first build.
import '../dist/src/bin.js';
