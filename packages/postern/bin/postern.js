#!/usr/bin/env node
// The `postern` command. Its code is @postern/cli (a library of the commands); this package only
// names the executable, so that `npm i -g postern` and `npx postern` find it. Committed as plain
// JavaScript, so that `npm ci` can link the command before the first build.
import '@postern/cli/bin';
