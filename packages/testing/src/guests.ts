/**
 * Router options for tests whose agents connect without a token to a router that has a secret:
 * they are let in as guests, with the guest rates and store shares lifted (every test agent
 * shares 127.0.0.1, and the tests measure delivery, not quotas; quota tests set their own).
 */
export const TEST_GUESTS = Object.freeze({
  allowGuests: true,
  guestMsgRate: 0,
  guestByteRate: 0,
  guestStoredBytes: 1 << 30,
  maxGuestStoredBytes: 1 << 30,
});

/** The same for a CLI router: its flags. */
export const TEST_GUEST_FLAGS: readonly string[] = Object.freeze(['--allow-guests', '--guest-rate', '0', '--guest-byte-rate', '0', '--guest-stored-bytes', String(1 << 30), '--max-guest-stored-bytes', String(1 << 30)]);
