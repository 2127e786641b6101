// Loads a GGUF file with llama.cpp (node-llama-cpp's prebuilt CPU build) and
// prints the greedy continuation of the given token ids as one JSON line:
//   node generate.mjs MODEL.gguf IDS N THREADS   ->   {"ids":[...]}
// IDS is comma-separated; up to N tokens are generated after them (argmax each
// step); an end-of-generation token is printed and ends the run, as in
// `rvec generate`. THREADS is passed explicitly: with
// node-llama-cpp's default a run hung on a loaded machine.
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

const [modelPath, idsText, countText, threadsText] = process.argv.slice(2);
if (!modelPath || !idsText || !countText || !threadsText) {
  console.error("usage: node generate.mjs MODEL.gguf IDS N THREADS");
  process.exit(2);
}
const threads = Number(threadsText);
const llama = await getLlama({gpu: false, build: "never", maxThreads: threads, logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath, gpuLayers: 0});
const context = await model.createContext({contextSize: 512, threads, batchSize: 512});
const sequence = context.getSequence();
const prompt = idsText.split(",").map(Number);
const ids = [];
for await (const token of sequence.evaluate(prompt, {temperature: 0, yieldEogToken: true})) {
  ids.push(token);
  if (ids.length >= Number(countText) || model.isEogToken(token)) break;
}
console.log(JSON.stringify({ids}));
await context.dispose();
await model.dispose();
await llama.dispose();
