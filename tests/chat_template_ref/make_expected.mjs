// Renders deterministic conversations through each chat template with
// @huggingface/jinja and writes tests/data/chat_templates/<name>_expected.jsonl,
// the reference the C++ parity test (chat_template_parity_test.cc) compares against.
//
//   cd tests/chat_template_ref && npm ci && node make_expected.mjs
//
// Each line: {"id", "context", "expected"} or {"id", "context", "error"} when the
// reference renderer raised (raise_exception in the template, for example).
import { Template } from "@huggingface/jinja";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const kDataDir = join(dirname(fileURLToPath(import.meta.url)), "..", "data", "chat_templates");
const kCasesPerTemplate = 64;

// mulberry32: small deterministic PRNG so the cases are the same on every run.
function makeRng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n) => Math.floor(next() * n),
    pick: (arr) => arr[Math.floor(next() * arr.length)],
    chance: (p) => next() < p,
  };
}

const kTexts = [
  "Hello!",
  "What is the capital of France?",
  "  padded with spaces and a newline  \n",
  "Line one\nLine two\n\nLine four",
  "",
  "Unicode: 你好，世界 — ünïcödé ✓ 🚀",
  "Quotes ' and \" and back\\slash",
  "Template-looking text {{ not_a_var }} {% if %} {# no #}",
  "Tabs\tand\ttabs",
  "Explain MoE routing in one sentence.",
  "<tool_response>\nraw\n</tool_response>",
  "1 + 1 = 2",
];
const kAssistantTexts = [
  "Sure, here you go.",
  "<think>\nLet me think step by step.\n</think>\n\nThe answer is 42.",
  "<think>short</think>Paris.",
  "Plain answer without thinking.",
  "\n\nLeading newlines answer",
  "",
  "Answer with unicode: 東京 🚀",
  "Multi\nline\nanswer",
];
const kSystemPrompts = [
  "You are a helpful assistant.",
  "You are DeepSeek, answer briefly.\nAlways be honest.",
  "  System prompt with surrounding whitespace  ",
  "系统提示：请用中文回答。",
  "",
];
const kTools = [
  {
    type: "function",
    function: {
      name: "get_weather",
      description: "Get the current weather for a city",
      parameters: {
        type: "object",
        properties: {
          city: { type: "string", description: "City name, e.g. 北京" },
          unit: { type: "string", enum: ["celsius", "fahrenheit"] },
        },
        required: ["city"],
      },
    },
  },
  {
    type: "function",
    function: {
      name: "search",
      description: "Search the web.\nReturns \"top\" results",
      parameters: {
        type: "object",
        properties: {
          query: { type: "string" },
          max_results: { type: "integer", default: 5, minimum: 1 },
          safe: { type: "boolean", default: true },
          score: { type: "number", default: 0.5 },
          filters: { type: "array", items: { type: "string" }, default: [] },
          extra: { type: "object", properties: {}, nullable: null },
        },
        required: ["query"],
      },
    },
  },
  {
    type: "function",
    function: { name: "noop", description: "", parameters: { type: "object", properties: {} } },
  },
];

function makeArguments(rng, name) {
  const options = [
    { city: rng.pick(["Paris", "北京", "New \"York\""]), unit: "celsius" },
    { query: rng.pick(["moe routing", "line\nbreak", "emoji 🚀"]), max_results: rng.int(10), safe: rng.chance(0.5) },
    {},
    { nested: { list: [1, 2.5, "x", null, true], deep: { k: "v" } } },
  ];
  return name === "get_weather" ? options[0] : rng.pick(options);
}

function makeToolCall(rng, argsAsString) {
  const name = rng.pick(["get_weather", "search", "noop"]);
  const args = makeArguments(rng, name);
  return {
    id: "call_" + rng.int(100000),
    type: "function",
    function: { name, arguments: argsAsString ? JSON.stringify(args) : args },
  };
}

// One conversation: an optional system prompt then `turns` exchanges, some
// with tool calls followed by tool results.
function makeMessages(rng, style) {
  const messages = [];
  if (rng.chance(0.6)) messages.push({ role: "system", content: rng.pick(kSystemPrompts) });
  if (style.multiSystem && rng.chance(0.2)) messages.push({ role: "system", content: rng.pick(kSystemPrompts) });
  const turns = 1 + rng.int(4);
  for (let t = 0; t < turns; ++t) {
    messages.push({ role: "user", content: rng.pick(kTexts) });
    const last = t === turns - 1;
    if (last && rng.chance(0.5)) break;  // ends on a user turn
    if (style.tools && rng.chance(0.4)) {
      // Llama-3.1 raises on several calls in one message: those cases check error parity.
      const n = style.singleToolCall ? (rng.chance(0.15) ? 2 : 1) : 1 + rng.int(3);
      const calls = [];
      for (let i = 0; i < n; ++i) calls.push(makeToolCall(rng, style.argsAsString));
      const msg = { role: "assistant", content: style.toolContent(rng), tool_calls: calls };
      if (style.reasoning && rng.chance(0.3)) msg.reasoning_content = "Need a tool.";
      messages.push(msg);
      for (const call of calls) {
        const content = style.dictToolResults && rng.chance(0.3)
          ? { result: "ok", value: rng.int(100) }
          : rng.pick(['{"temperature": 21}', "No results.", "结果：晴", ""]);
        messages.push({ role: "tool", tool_call_id: call.id, content });
      }
      if (rng.chance(0.7)) messages.push({ role: "assistant", content: rng.pick(kAssistantTexts) });
    } else {
      const msg = { role: "assistant", content: rng.pick(kAssistantTexts) };
      if (style.reasoning && rng.chance(0.3)) msg.reasoning_content = rng.pick(["Thinking about it.", "\nstep 1\nstep 2\n"]);
      messages.push(msg);
    }
  }
  return messages;
}

const kSpecs = {
  deepseek_v3: {
    bos: "<｜begin▁of▁sentence｜>", eos: "<｜end▁of▁sentence｜>",
    style: { tools: true, argsAsString: true, multiSystem: true, toolContent: () => null },
  },
  deepseek_r1: {
    bos: "<｜begin▁of▁sentence｜>", eos: "<｜end▁of▁sentence｜>",
    style: { tools: true, argsAsString: true, multiSystem: true,
             toolContent: (rng) => (rng.chance(0.5) ? null : "Let me call a tool.") },
  },
  qwen3: {
    bos: null, eos: "<|im_end|>",
    style: { tools: true, argsAsString: false, reasoning: true, passTools: true,
             toolContent: (rng) => rng.pick(["", "I will check.", "<think>\nplan\n</think>\n\ncalling"]) },
    extra: (rng, ctx) => {
      const r = rng.int(3);
      if (r === 0) ctx.enable_thinking = false;
      if (r === 1) ctx.enable_thinking = true;
    },
  },
  llama3_1: {
    bos: "<|begin_of_text|>", eos: "<|eot_id|>",
    style: { tools: true, argsAsString: false, singleToolCall: true, dictToolResults: true, passTools: true,
             toolContent: () => "" },
    extra: (rng, ctx) => {
      if (rng.chance(0.2)) ctx.tools_in_user_message = false;
      if (rng.chance(0.2)) ctx.date_string = "01 Jan 2025";
      // builtin_tools is left out: @huggingface/jinja 0.5.x has no `reject` filter on
      // lists, so the reference cannot render it (the C++ unit tests cover reject).
    },
  },
  llama3: {
    bos: "<|begin_of_text|>", eos: "<|eot_id|>",
    style: { tools: false, toolContent: () => "" },
  },
};

function makeCase(rng, spec) {
  const ctx = { messages: makeMessages(rng, spec.style) };
  ctx.add_generation_prompt = rng.chance(0.5);
  if (spec.bos !== null) ctx.bos_token = spec.bos;
  ctx.eos_token = spec.eos;
  if (spec.style.passTools && rng.chance(0.4)) ctx.tools = kTools.slice(0, 1 + rng.int(kTools.length));
  if (spec.extra) spec.extra(rng, ctx);
  return ctx;
}

let seed = 1;
for (const [name, spec] of Object.entries(kSpecs)) {
  const source = readFileSync(join(kDataDir, `${name}.jinja`), "utf8");
  const template = new Template(source);
  const rng = makeRng(seed++ * 7919);
  const lines = [];
  let n_errors = 0;
  for (let id = 0; id < kCasesPerTemplate; ++id) {
    const context = makeCase(rng, spec);
    const record = { id, context };
    try {
      // structuredClone: the renderer must not see objects mutated by an earlier case.
      record.expected = template.render(structuredClone(context));
    } catch (e) {
      record.error = String(e.message ?? e);
      ++n_errors;
    }
    lines.push(JSON.stringify(record));
  }
  writeFileSync(join(kDataDir, `${name}_expected.jsonl`), lines.join("\n") + "\n");
  console.log(`${name}: ${lines.length} cases (${n_errors} reference errors)`);
}
