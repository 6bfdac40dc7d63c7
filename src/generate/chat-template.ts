import { Template } from "@huggingface/jinja";
import type { Tokenizer } from "../io/tokenizer.js";

export interface ChatMessage {
  role: "system" | "user" | "assistant" | (string & {});
  content: string;
}

/**
 * Used when a model ships no chat template (base models, llama2.c checkpoints): each message on its
 * own line as "role: content", then "assistant:" for the model to continue. Plain text, so that any
 * tokenizer can encode it; the BOS token comes from the tokenizer, not the template.
 */
export const DEFAULT_CHAT_TEMPLATE =
  "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}" +
  "{% if add_generation_prompt %}assistant:{% endif %}";

const cache = new Map<string, Template>();

/** The prompt text for `messages` under the tokenizer's template (or the default one). */
export function renderChat(tokenizer: Tokenizer, messages: readonly ChatMessage[], addGenerationPrompt = true): string {
  if (messages.length === 0) throw new Error("chat needs at least one message");
  for (const [i, m] of messages.entries()) {
    if (typeof m?.role !== "string" || typeof m?.content !== "string") {
      throw new TypeError(`message ${i} needs a string role and a string content`);
    }
  }
  const source = tokenizer.chatTemplate ?? DEFAULT_CHAT_TEMPLATE;
  let template = cache.get(source);
  if (!template) {
    template = new Template(source);
    cache.set(source, template);
  }
  return template.render({
    messages,
    add_generation_prompt: addGenerationPrompt,
    ...tokenizer.specialTokens,
  });
}

/** Whether a rendered chat prompt already begins with the BOS text, so that encoding must not add another. */
export function startsWithBos(tokenizer: Tokenizer, text: string): boolean {
  const bos = tokenizer.specialTokens["bos_token"];
  return bos !== undefined && bos.length > 0 && text.startsWith(bos);
}
