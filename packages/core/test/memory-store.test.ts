import { MemoryStore, type Store } from '@postern/core';
import { storeSuite } from '@postern/testing';

// A restart of a MemoryStore is the same instance, closed and recovered: it models a router
// restart inside one process, not a crash of the process.
storeSuite('memory', {
  create: () => Promise.resolve<Store>(new MemoryStore()),
  reopen: async (s) => {
    await s.close();
    return s;
  },
});
