// Reference throughput for bench/tokenizer_bench: encodes the documents in a
// JSONL file (one JSON string per line) with the transformers.js DeepSeek-V3
// tokenizer on one thread and prints {"mb_per_s", "mb_per_cpu_s", "bytes",
// "seconds", "n_tokens"} as one JSON line.
//
//   node bench/tokenizer_ref_bench.mjs <docs.jsonl> [package]
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const [docsPath, pkg = "tokenizer-deepseek_v3"] = process.argv.slice(2);
const entry = join(root, "tests/tokenizer_ref/node_modules/@lenml", pkg, "dist/main.mjs");
const { fromPreTrained } = await import(pathToFileURL(entry).href);
const tokenizer = fromPreTrained();
const docs = readFileSync(docsPath, "utf8").split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l));
const bytes = docs.reduce((n, d) => n + Buffer.byteLength(d), 0);

const start = process.hrtime.bigint();
const cpuStart = process.cpuUsage();
let nTokens = 0;
for (const d of docs) nTokens += tokenizer.encode(d, { add_special_tokens: false }).length;
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
const cpu = process.cpuUsage(cpuStart);
const cpuSeconds = (cpu.user + cpu.system) / 1e6;  // includes V8's GC threads
console.log(JSON.stringify({ mb_per_s: bytes / 1e6 / seconds, mb_per_cpu_s: bytes / 1e6 / cpuSeconds, bytes, seconds, n_tokens: nTokens }));
