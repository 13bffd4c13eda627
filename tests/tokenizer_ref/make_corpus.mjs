// Writes tests/data/tokenizer/corpus.jsonl: a deterministic (seeded) mixed
// corpus for tokenizer tests, one JSON string per line. Every text is composed
// here from word lists, code templates and code-point ranges written for this
// purpose (no third-party text).
//
//   node tests/tokenizer_ref/make_corpus.mjs
import { writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const outPath = join(here, "..", "data", "tokenizer", "corpus.jsonl");

// mulberry32: small, seedable, stable across Node versions.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = rng(20261122);
const int = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));
const pick = (xs) => xs[Math.floor(rand() * xs.length)];
const times = (n, f) => Array.from({ length: n }, (_, i) => f(i));
const cp = (lo, hi) => String.fromCodePoint(int(lo, hi));

const enWords = (
  "the a an of to and in is it that for on with as was by at be this from or have not are " +
  "model token server request batch cache expert layer router attention memory latency " +
  "throughput kernel scheduler decode prefill sequence prompt stream GPU CPU tensor shape " +
  "quick brown fox jumps over lazy dog they we you I she he it's don't can't won't we'll " +
  "you're I've she'd Hello World OpenAI DeepSeek Qwen Llama Mistral mixture experts routing " +
  "weights gradient training inference quantization FP8 BF16 int4 speculative sampling " +
  "temperature nucleus top-k top-p penalty repetition ALL-CAPS CamelCase snake_case " +
  "kebab-case e.g. i.e. etc. Mr. Dr. U.S.A. naïve café résumé coöperate façade jalapeño"
).split(" ");
const zhChars = ("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产" +
  "种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应" +
  "开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只" +
  "没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少" +
  "图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处理世界模型服务器推理专家").split("");
const zhPunct = "，。！？；：“”‘’（）《》【】、…—".split("");
const hira = () => cp(0x3041, 0x3093), kata = () => cp(0x30a1, 0x30f6);
const jaWords = ["東京", "日本語", "テスト", "トークナイザー", "推論", "サーバー", "です", "ます", "ありがとう",
  "こんにちは", "世界", "モデル", "専門家", "混合", "計算", "速度", "高速化", "キャッシュ"];
const arWords = ["مرحبا", "بالعالم", "النموذج", "الخادم", "سريع", "جدا", "اللغة", "العربية", "كتاب", "مدرسة",
  "الذكاء", "الاصطناعي", "في", "من", "على", "إلى", "هذا", "ذلك"];
const koSyl = () => cp(0xac00, 0xd7a3);
const koWords = ["안녕하세요", "세계", "모델", "서버", "토크나이저", "추론", "전문가", "한국어", "테스트", "빠른"];
const emoji = ["😀", "😂", "🤖", "🚀", "🔥", "✨", "👍🏽", "👩🏾‍💻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇯🇵", "🇺🇸", "1️⃣", "❤️",
  "🧑‍🤝‍🧑", "🐈‍⬛", "👁️‍🗨️", "🏴‍☠️", "🫠", "🙋‍♀️", "💯", "🎉", "☕", "⚡"];
const combining = () => cp(0x300, 0x36f);
const specials = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>",
  "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
  "<|vision_start|>", "<｜tool▁calls▁begin｜>", "<|im_sta", "<｜begin▁of", "<|", "|>", "<｜", "｜>",
  "<|IM_START|>", "< |im_start|>", "<|im_start|><|im_end|>", "<<|im_end|>>"];
const spaces = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\t\t", "\u00a0", "\u3000", "\u2003",
  "\u200b", "\ufeff", "\u0085", "\u2028", "\u180e", "\u202f", "\f", "\v"];

const englishSentence = () => {
  const s = times(int(3, 18), () => pick(enWords)).join(" ");
  return s[0].toUpperCase() + s.slice(1) + pick([".", "!", "?", "...", ":", ";", ""]);
};
const chinese = () => times(int(1, 4), () => times(int(4, 30), () => pick(zhChars)).join("") + pick(zhPunct)).join("");
const japanese = () => times(int(3, 12), () => pick([() => pick(jaWords), hira, kata, () => pick(zhChars), () => "、", () => "。"])()).join("");
const korean = () => times(int(2, 10), () => pick([() => pick(koWords), () => times(int(1, 4), koSyl).join("")])()).join(" ") + pick([".", "?", "!", ""]);
const arabic = () => times(int(2, 12), () => pick(arWords)).join(" ") + pick(["؟", ".", "،", ""]);
const number = () => pick([
  () => String(int(0, 9)), () => String(int(0, 999999999)), () => (rand() * 1e6).toFixed(int(0, 6)),
  () => int(1, 999).toLocaleString("en-US") + "," + String(int(100, 999)), () => "3.14159265358979",
  () => "+1-" + int(200, 999) + "-" + int(100, 999) + "-" + int(1000, 9999), () => "１２３４５", () => "٠١٢٣٤٥٦٧٨٩",
  () => "0x" + int(0, 0xffffff).toString(16), () => "1e-" + int(1, 30), () => "v" + int(0, 9) + "." + int(0, 99) + "." + int(0, 999),
  () => times(int(20, 80), () => String(int(0, 9))).join(""),
])();

const codeSnippets = [
  () => `int ${pick(["main", "foo", "compute_rank"])}(int argc, char** argv) {\n  for (int i = 0; i < ${int(1, 100)}; ++i) {\n    printf("%d\\n", i * ${int(2, 9)});\n  }\n  return 0;\n}`,
  () => `def ${pick(["encode", "decode", "merge"])}(self, text: str) -> list[int]:\n    """Return ids."""\n    ids = [self.vocab[t] for t in text.split()]\n    return ids if ids else [${int(0, 9)}]\n`,
  () => `const ${pick(["x", "result", "tokens"])} = await fetch("https://example.com/api/v${int(1, 3)}?q=" + encodeURIComponent(q));\nconsole.log(\`done: \${${pick(["x", "y"])}.length}\`);`,
  () => `fn main() {\n    let v: Vec<u32> = (0..${int(2, 50)}).map(|x| x * x).collect();\n    println!("{:?}", v);\n}`,
  () => `package main\n\nimport "fmt"\n\nfunc main() {\n\tm := map[string]int{"a": ${int(0, 9)}, "b": 2}\n\tfmt.Println(m)\n}`,
  () => `SELECT id, name, COUNT(*) AS n FROM users u JOIN orders o ON o.user_id = u.id WHERE u.age > ${int(18, 70)} GROUP BY id HAVING n >= 2 ORDER BY n DESC;`,
  () => `#!/bin/bash\nset -euo pipefail\nfor f in *.log; do\n  grep -c "ERROR" "$f" || true\ndone | sort -n | tail -${int(1, 9)}`,
  () => JSON.stringify({ model: pick(["deepseek-v3", "qwen3"]), max_tokens: int(1, 4096), temperature: rand().toFixed(2), stop: ["\n\n", "</s>"], nested: { a: [1, 2, { b: null }] } }, null, pick([0, 2, 4])),
  () => `<div class="${pick(["row", "col-md-6"])}">\n  <a href="/path?x=1&amp;y=2">Link &lt;here&gt;</a>\n</div>`,
  () => `    if x == ${int(0, 9)}:\n\t\treturn {'key': [1, 2, 3], "other": (4, 5)}  # comment\n    elif y != None and z >= 3.5e-3: pass`,
  () => `template <typename T>\nstd::vector<T> operator+(const std::vector<T>& a, const std::vector<T>& b) { /* TODO */ return a; }`,
  () => `\\begin{equation}\n  E = mc^2 + \\sum_{i=0}^{${int(2, 9)}} \\alpha_i x^i \\quad \\forall x \\in \\mathbb{R}\n\\end{equation}`,
  () => "```python\nprint('hello')\n```\n",
  () => `git commit -m "Fix #${int(1, 9999)}: don't crash on empty input" && git push origin HEAD:refs/for/main`,
  () => `${pick(["ERROR", "WARN", "INFO"])} 2026-11-${int(10, 30)}T0${int(0, 9)}:${int(10, 59)}:${int(10, 59)}.${int(100, 999)}Z [worker-${int(0, 63)}] request_id=${int(1e5, 1e6)} latency_ms=${(rand() * 100).toFixed(3)}`,
];

const randomUnicode = () => times(int(5, 60), () => pick([
  () => cp(0x20, 0x7e), () => cp(0xa0, 0x24f), () => cp(0x370, 0x3ff), () => cp(0x400, 0x4ff),
  () => cp(0x5d0, 0x5ea), () => cp(0x621, 0x64a), () => cp(0x905, 0x939), () => cp(0xe01, 0xe2e),
  () => cp(0x2000, 0x206f), () => cp(0x2190, 0x21ff), () => cp(0x2200, 0x22ff), () => cp(0x2500, 0x257f),
  () => cp(0x3041, 0x30ff), () => cp(0x4e00, 0x9fa5), () => cp(0xac00, 0xd7a3), () => cp(0xff01, 0xff5e),
  () => cp(0x1f300, 0x1f64f), () => cp(0x1f900, 0x1f9ff), () => combining(), () => cp(0x0, 0x1f),
  () => pick(spaces),
])()).join("");

const combiningText = () => pick([
  () => times(int(1, 8), () => pick("aeiouAEIOUnc".split("")) + times(int(1, 3), combining).join("")).join(pick(["", " "])),
  () => "Tiếng Việt có dấu: " + "Trường Đại học Bách khoa Hà Nội".normalize(pick(["NFC", "NFD"])),
  () => "e\u0301 vs \u00e9; A\u030a vs \u00c5 vs \u212b; \u1e9b\u0323; q\u0307\u0323; \u0041\u0328\u0301",
  () => "\u1100\u1161\u11a8 \u1112\u1161\u11ab\u1100\u1173\u11af" + " decomposed hangul " + "한국어".normalize("NFD"),
  () => "हिन्दी भाषा में परीक्षण " + "क़ ख़ ग़".normalize("NFD"),
  () => "ภาษาไทย ทดสอบ ตัวตัดคำ " + cp(0xe31, 0xe3a),
  () => "ﬁ ﬂ ㎏ ① ² ½ Ⅸ ｶﾀｶﾅ ＡＢＣ ℌ ﬀ",
  () => "Z̷̢̛a̶͔͝l̸̰̄g̵̨͐o̴͙͆ text " + times(int(5, 30), combining).join(""),
])();

const whitespaceText = () => times(int(2, 8), () => pick([() => pick(enWords), () => pick(spaces).repeat(int(1, 40)), () => " ".repeat(int(1, 200))])()).join("");
const specialText = () => times(int(2, 7), () => pick([() => pick(specials), englishSentence, chinese, () => pick(spaces), () => pick(enWords)])()).join(pick(["", " ", "\n"]));
const emojiText = () => times(int(2, 12), () => pick([() => pick(emoji), () => pick(enWords), () => " ", () => pick(zhChars)])()).join("");
const longWord = () => pick([
  () => "a".repeat(int(100, 6000)), () => times(int(500, 3000), () => cp(0x61, 0x7a)).join(""),
  () => "的".repeat(int(50, 2000)), () => times(int(200, 2000), () => String(int(0, 9))).join(""),
  () => "https://example.com/" + times(int(50, 400), () => pick("abcdefghijklmnopqrstuvwxyz0123456789-_/".split(""))).join(""),
  () => times(int(100, 1500), () => pick("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".split(""))).join("") + "==",
  () => "Supercalifragilisticexpialidocious".repeat(int(2, 60)), () => "!".repeat(int(10, 500)),
  () => "😀".repeat(int(10, 300)), () => "\n".repeat(int(10, 300)), () => "-".repeat(int(10, 1000)),
  () => times(int(100, 800), () => cp(0x4e00, 0x9fa5)).join(""), () => times(int(100, 500), koSyl).join(""),
])();
const mixed = () => times(int(2, 6), () => pick([englishSentence, chinese, japanese, korean, arabic, number, emojiText, () => pick(spaces)])()).join(pick([" ", "\n", "", "\n\n"]));

const fixed = ["", " ", "  ", "\n", "\t", "a", "A", "0", "00", "000", "0000", "!", "'s", "'S", "I'm", "I'M", "don't",
  "DON'T", "we'LL", "ſ", "'ſ", "K", "ǅ", "<｜begin▁of▁sentence｜>", "<|im_start|>", "<|endoftext|>", " <|im_end|> ",
  "\u00e9", "e\u0301", "\ufeff", "\u0085", "a\u0085b", "x\ufeffy", "a\u180eb", "\r", "\r\n\r\n", " \t \n ", "中", "😀", "\u200d"];

const generators = [
  [englishSentence, 400], [chinese, 200], [japanese, 120], [korean, 120], [arabic, 100],
  [() => pick(codeSnippets)(), 300], [whitespaceText, 120], [number, 120], [emojiText, 100],
  [combiningText, 100], [specialText, 150], [longWord, 50], [randomUnicode, 150], [mixed, 150],
];
const corpus = [...fixed];
for (const [gen, n] of generators) for (let i = 0; i < n; ++i) corpus.push(gen());
writeFileSync(outPath, corpus.map((s) => JSON.stringify(s)).join("\n") + "\n");
console.log(`wrote ${corpus.length} strings (${corpus.reduce((n, s) => n + Buffer.byteLength(s), 0)} bytes) to ${outPath}`);
