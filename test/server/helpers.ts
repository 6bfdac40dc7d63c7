import { loadModel } from "../../src/load.js";
import type { Model } from "../../src/model/model.js";
import { FrugalServer, type ServerOptions } from "../../src/server/server.js";
import { STORIES } from "../paths.js";

export interface Running {
  server: FrugalServer;
  model: Model;
  url: string;
  close(): Promise<void>;
}

/** stories260K (one thread) served on 127.0.0.1 at a random free port. */
export async function startServer(options: ServerOptions = {}, source = STORIES): Promise<Running> {
  const model = await loadModel(source, { threads: 1 });
  const server = new FrugalServer(model, options);
  const address = await server.listen(0, "127.0.0.1");
  return {
    server,
    model,
    url: `http://127.0.0.1:${address.port}`,
    async close() {
      await server.close(1000);
      model.dispose();
    },
  };
}

/** The text model.chat (or model.generate) streams, and how many tokens it took. */
export async function reference(pieces: AsyncGenerator<{ text: string; tokenId?: number }>): Promise<{ text: string; tokens: number }> {
  let text = "";
  let tokens = 0;
  for await (const p of pieces) {
    text += p.text;
    if (p.tokenId !== undefined) tokens++;
  }
  return { text, tokens };
}

/** Reads a server-sent-event stream to the end: the parsed data objects, and whether [DONE] came. */
export async function readEvents(res: Response): Promise<{ events: any[]; done: boolean }> {
  const text = await res.text();
  const events: any[] = [];
  let done = false;
  for (const block of text.split("\n\n")) {
    if (!block.startsWith("data: ")) continue;
    const data = block.slice(6);
    if (data === "[DONE]") done = true;
    else events.push(JSON.parse(data));
  }
  return { events, done };
}

/** The value of an unlabelled metric in a /metrics text. */
export function metric(text: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  if (!m) throw new Error(`no metric ${name}`);
  return Number(m[1]);
}
