/**
 * The lane-blocks GEMV prototypes (bench/lane-blocks.ts) pass the check that bench/gpu-razer-gemv.ts and
 * bench/gpu-gemv-anatomy.ts run before timing (bench/lane-blocks-check.ts: outputs against the f64 sum
 * over the engine's unpacked RaZeR weights, or q4_0's formula), on SwiftShader in CI; and the check
 * fails when a decoder is wrong (the largest magnitude off, the sentinel's value ignored).
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { openOrSkip } from "../backend/webgpu/helpers.js";
import { checkBlocksQ4, checkRazerLanes } from "../../bench/lane-blocks-check.js";

const { gpu, reason } = await openOrSkip();
after(() => gpu?.dispose());
const subgroups = !!gpu && gpu.gpu.subgroups && gpu.gpu.subgroupMinSize >= 32;

test("blocks-i8 q4_0 equals its f64 formula", { skip: !gpu && reason }, async () => {
  // 40 blocks: two whole 32-lane steps at U1, the tail loop at U4
  assert.match(await checkBlocksQ4(gpu!.gpu.device, subgroups, 32, 40 * 32), /match/);
});

test("every RaZeR runs decoder equals the f64 product over the unpacked weights", { skip: !gpu && reason }, async () => {
  // 5 groups = 20 runs: all in the tail loop at U4, a partial step at U1
  assert.match(await checkRazerLanes(gpu!.gpu.device, subgroups, 32, 5 * 128), /match/);
});

test("the RaZeR check catches a wrong decoder", { skip: !gpu && reason }, async () => {
  const device = gpu!.gpu.device;
  // 2·|E2M1(7)| becomes 10 instead of 12
  await assert.rejects(checkRazerLanes(device, subgroups, 32, 256, ["swar"], (c) => c.replace("(((r >> 1u) & r) << 1u)", "0u")), /razer swar/);
  // the sentinel decodes to 0 instead of 2·sv
  await assert.rejects(checkRazerLanes(device, subgroups, 32, 256, ["2c"], (c) => c.replace("(s ^ neg) * sv", "0u")), /razer 2c/);
  // lut: every special value decodes as 5, never 8
  await assert.rejects(checkRazerLanes(device, subgroups, 32, 256, ["lut"], (c) => c.replace("10 + 6 * i32(t & 1u)", "10")), /razer lut/);
});
