// llama.cpp's side of bench/engine_vs_llamacpp.sh: the three rates that
// `rvec_engine_bench MODEL THREADS compare` measures for rvec, on a GGUF file,
// with the same token ids, printed as one JSON line:
//   node llamacpp_bench.mjs NPM_DIR MODEL.gguf THREADS
//   -> {"decode1": tok/s, "prompt512": tok/s, "decode8": tok/s}
// NPM_DIR holds node_modules/node-llama-cpp (tests/gguf/npm after
// scripts/setup.sh). The thread count is always passed explicitly: with
// node-llama-cpp's default a run hung on this shared machine. CPU backend,
// flash attention on, greedy sampling.
import path from "node:path";
import {pathToFileURL} from "node:url";

const [npmDir, modelPath, threadsText] = process.argv.slice(2);
if (!npmDir || !modelPath || !threadsText) {
  console.error("usage: node llamacpp_bench.mjs NPM_DIR MODEL.gguf THREADS");
  process.exit(2);
}
const entry = path.resolve(npmDir, "node_modules/node-llama-cpp/dist/index.js");
const {getLlama, LlamaLogLevel} = await import(pathToFileURL(entry).href);

const threads = Number(threadsText);
const kDecodeTokens = 64, kStreams = 8, kStreamTokens = 32, kPromptTokens = 512, kStreamPrompt = 16;
const now = () => Number(process.hrtime.bigint()) / 1e9;
// The prompts rvec's bench uses: stream i gets 100 + 37 i + t, the long prompt 1000 + t.
const streamPrompt = (i) => Array.from({length: kStreamPrompt}, (_, t) => 100 + 37 * i + t);
const longPrompt = Array.from({length: kPromptTokens}, (_, t) => 1000 + t);

// Generates up to `count` greedy tokens after `prompt`; returns the times at
// which each token arrived.
async function generate(sequence, prompt, count) {
  const times = [];
  for await (const token of sequence.evaluate(prompt, {temperature: 0})) {
    times.push(now());
    if (times.length >= count || model.isEogToken(token)) break;
  }
  return times;
}

const llama = await getLlama({gpu: false, build: "never", maxThreads: threads, logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath, gpuLayers: 0});
const options = {threads, batchSize: kPromptTokens, flashAttention: true};

// One stream: tokens after the first (whose time includes the prompt) per second.
let context = await model.createContext({...options, contextSize: 1024});
const times = await generate(context.getSequence(), streamPrompt(0), kDecodeTokens);
const decode1 = (times.length - 1) / (times[times.length - 1] - times[0]);
await context.dispose();

// A 512-token prompt in one evaluation.
context = await model.createContext({...options, contextSize: 1024});
let start = now();
await context.getSequence().evaluateWithoutGeneratingNewTokens(longPrompt);
const prompt512 = kPromptTokens / (now() - start);
await context.dispose();

// Eight streams decoded together, prefill included: node-llama-cpp puts the
// pending tokens of all sequences into one batch per step.
context = await model.createContext({...options, contextSize: kStreams * 128, sequences: kStreams});
start = now();
const all = await Promise.all(
    Array.from({length: kStreams}, (_, i) => generate(context.getSequence(), streamPrompt(i), kStreamTokens)));
const decode8 = all.reduce((sum, t) => sum + t.length, 0) / (now() - start);
await context.dispose();

console.log(JSON.stringify({decode1, prompt512, decode8}));
await model.dispose();
await llama.dispose();
