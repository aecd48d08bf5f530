// The page (./page.ts) imports the client's browser bundle as `./postern.min.js`, served by the
// demo server from @postern/client's dist/browser: its API is the package's.
export { connect } from '@postern/client';
export type { Client, ClientStatus, Message } from '@postern/client';
