/**
 * Stands in for the `webgpu` package (Dawn for Node) in the browser bundle: device.ts imports it only
 * where navigator.gpu is missing, and a browser cannot load Dawn.
 */
export function create(): never {
  throw new Error("WebGPU is not available in this browser (navigator.gpu is missing), and Dawn (the `webgpu` package) runs only in Node");
}
