/** A model file or folder that cannot be read as what it claims to be. The message names the file and the problem. */
export class FormatError extends Error {
  constructor(readonly source: string, problem: string) {
    super(`${source}: ${problem}`);
    this.name = "FormatError";
  }
}
