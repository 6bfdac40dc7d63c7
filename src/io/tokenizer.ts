/** What the engine needs from a tokenizer, whatever file it came from. */
export interface Tokenizer {
  readonly vocabSize: number;
  readonly bosTokenId?: number;
  readonly eosTokenIds: readonly number[];
  /** The Jinja chat template the model ships, if any. */
  readonly chatTemplate?: string;
  /** Special-token strings a chat template refers to (bos_token, eos_token, ...). */
  readonly specialTokens: Readonly<Record<string, string>>;
  /** Token ids of `text`; with addSpecialTokens the model's BOS (and whatever its post-processor adds). */
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  /** Text of `ids`; special tokens are dropped unless `keepSpecial`. */
  decode(ids: readonly number[], options?: { keepSpecial?: boolean }): string;
}

/**
 * Turns a growing list of token ids into text pieces as they arrive. Decoding token by token breaks
 * multi-byte characters and the leading-space rules of SentencePiece, so each step decodes a short
 * window of recent tokens and emits only the text beyond what that window already produced
 * (the approach of Hugging Face's text-generation-inference).
 */
export class StreamDecoder {
  private ids: number[] = [];
  private prefixOffset = 0;
  private readOffset = 0;

  constructor(private readonly tokenizer: Tokenizer, context: readonly number[] = []) {
    this.ids = [...context];
    this.prefixOffset = Math.max(0, this.ids.length - 5);
    this.readOffset = this.ids.length;
  }

  /** Adds one token and returns the text it completes (possibly empty). */
  push(id: number): string {
    this.ids.push(id);
    const prefix = this.tokenizer.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const text = this.tokenizer.decode(this.ids.slice(this.prefixOffset));
    if (text.length > prefix.length && !text.endsWith("\uFFFD")) {
      const piece = text.slice(prefix.length);
      this.prefixOffset = this.readOffset;
      this.readOffset = this.ids.length;
      return piece;
    }
    return "";
  }

  /** Whatever is still held back (an incomplete character at the very end). */
  flush(): string {
    const prefix = this.tokenizer.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const text = this.tokenizer.decode(this.ids.slice(this.prefixOffset));
    this.prefixOffset = this.readOffset = this.ids.length;
    return text.slice(prefix.length);
  }
}
