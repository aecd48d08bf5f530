import { PosternError } from '@postern/protocol';

/** A mistake in how the command was called: printed with a pointer to --help, exit code 2. */
export class UsageError extends PosternError {
  constructor(message: string) {
    super('ERR_USAGE', message);
    this.name = 'UsageError';
  }
}
