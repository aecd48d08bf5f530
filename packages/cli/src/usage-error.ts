import { PosternError } from '@postern/protocol';

/**
 * A mistake in how the command was called (an unknown or missing option, a bad value, a bad
 * config file): printed as one line ending in [ERR_USAGE], exit status 2.
 */
export class UsageError extends PosternError {
  constructor(message: string) {
    super('ERR_USAGE', message);
    this.name = 'UsageError';
  }
}
