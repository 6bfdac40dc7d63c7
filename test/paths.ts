import { fileURLToPath } from "node:url";
import { join } from "node:path";

/** The repository root (tests run from dist/test/...). */
export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const STORIES = join(ROOT, "models/stories260K/stories260K.bin");
export const STORIES_TOKENIZER = join(ROOT, "models/stories260K/tok512.bin");
/** llama2.c run.c's greedy output for stories260K (shipped beside the project in shared/, copied into test/fixtures). */
export const STORIES_EXPECTED = join(ROOT, "test/fixtures/stories260K-expected-greedy-200.txt");
