/**
 * Server-sent events as the OpenAI streaming API sends them: events separated by a blank line, the
 * payload in `data:` lines. Only the payloads matter here; other fields (event, id, retry, comments)
 * are skipped.
 */

/** The `data` payloads of an event stream's events, in order, as they arrive. */
export async function* sseData(body: ReadableStream<Uint8Array>, signal?: AbortSignal): AsyncGenerator<string> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      if (signal?.aborted) return;
      const { done, value } = await reader.read();
      let text = buffer + (done ? decoder.decode() : decoder.decode(value, { stream: true }));
      // an event ends at a blank line; CRLF and CR line ends are allowed, so a CR at the end of a chunk
      // waits to see whether an LF follows
      const held = !done && text.endsWith("\r") ? "\r" : "";
      if (held) text = text.slice(0, -1);
      const events = text.replace(/\r\n?/g, "\n").split("\n\n");
      buffer = done ? "" : events.pop()! + held;
      for (const event of events) {
        const data = eventData(event);
        if (data !== undefined) yield data;
      }
      if (done) return;
    }
  } finally {
    // a consumer that stops early (at [DONE], an error or Stop) closes the connection
    reader.cancel().catch(() => {});
  }
}

/** The joined `data:` lines of one event, or undefined when it has none. */
function eventData(event: string): string | undefined {
  const lines: string[] = [];
  for (const line of event.split("\n")) {
    if (line === "data") lines.push("");
    else if (line.startsWith("data:")) lines.push(line.slice(line.startsWith("data: ") ? 6 : 5));
  }
  return lines.length > 0 ? lines.join("\n") : undefined;
}
