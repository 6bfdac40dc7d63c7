/**
 * Every KV method `--kv` accepts, in the order tables list them. A method plugs in with its own file and
 * one line here (see src/kv/store.ts for the interface).
 */
import type { KvMethod } from "./store.js";
import { denseMethod } from "./dense.js";
import { h2oMethod, oracleMethod, questMethod, snapkvMethod, streamingMethod } from "./policies.js";
import { sparseKvMethods } from "../sparse/kv-store.js";
import { svdMethod, xkvMethod } from "./xkv/xkv-store.js";
import { tokenbutlerMethod } from "./tokenbutler/tokenbutler-store.js";

export const KV_METHODS: readonly KvMethod[] = [
  denseMethod,
  oracleMethod,
  h2oMethod,
  snapkvMethod,
  questMethod,
  streamingMethod,
  svdMethod,
  xkvMethod,
  tokenbutlerMethod,
  ...sparseKvMethods,
];
