/**
 * The one error type mla-ts throws for problems a user can fix (bad files, bad arguments).
 * The CLI prints `error: <message>` for these and exits non-zero; anything else is a bug and keeps its stack.
 */
export class MlaError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MlaError";
  }
}
