#include "tokenizer/pre_tokenizer_regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/tokenizer_json.h"
#include "tokenizer/unicode.h"
#include <pcre2.h>

namespace moeserve {
namespace {

// ECMAScript WhiteSpace + LineTerminator, as members of a PCRE2 class.
constexpr std::string_view kJsSpaceClass =
    "\\t\\n\\x0B\\f\\r \\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"
    "\\x{205F}\\x{3000}\\x{FEFF}";

// transformers.js rewrites these two fragments before compiling.
constexpr std::pair<std::string_view, std::string_view> kJsRewrites[] = {
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)", "(?:'([sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD]))"},
    {" ?[^(\\s|[.,!?\xE2\x80\xA6\xE3\x80\x82\xEF\xBC\x8C\xE3\x80\x81\xE0\xA5\xA4\xDB\x94\xD8\x8C])]"
     "+",
     " ?[^\\s.,!?\xE2\x80\xA6\xE3\x80\x82\xEF\xBC\x8C\xE3\x80\x81\xE0\xA5\xA4\xDB\x94\xD8\x8C]+"},
};

struct MatchDataDeleter {
  void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};

// One match block per thread: the ovector only ever holds the whole match.
pcre2_match_data* thread_match_data() {
  thread_local std::unique_ptr<pcre2_match_data, MatchDataDeleter> md(
      pcre2_match_data_create(1, nullptr));
  return md.get();
}

}  // namespace

std::string translate_pattern_to_pcre2(std::string_view pattern) {
  std::string p(pattern);
  for (auto [from, to] : kJsRewrites) {
    for (size_t at = p.find(from); at != std::string::npos; at = p.find(from, at + to.size()))
      p.replace(at, from.size(), to);
  }
  std::string out;
  out.reserve(p.size() + 64);
  bool in_class = false;
  size_t class_start = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      char e = p[i + 1];
      ++i;
      if (e == 's') {
        if (in_class) {
          out += kJsSpaceClass;
        } else {
          out += '[';
          out += kJsSpaceClass;
          out += ']';
        }
      } else if (e == 'S' && !in_class) {
        out += "[^";
        out += kJsSpaceClass;
        out += ']';
      } else {
        out += '\\';
        out += e;
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      class_start = out.size() + 1;
      out += c;
      if (i + 1 < p.size() && p[i + 1] == '^') {
        out += '^';
        ++i;
        class_start = out.size();
      }
      continue;
    }
    if (in_class && c == ']' && out.size() != class_start) in_class = false;
    out += c;
  }
  return out;
}

struct Regex::Impl {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Impl() { pcre2_code_free(code); }
};

Regex::~Regex() = default;

StatusOr<std::unique_ptr<Regex>> Regex::compile(std::string_view pattern, bool literal) {
  std::string translated = literal ? std::string(pattern) : translate_pattern_to_pcre2(pattern);
  // PCRE2_LITERAL admits UTF but not UCP (which a literal does not need).
  uint32_t options = literal ? PCRE2_UTF | PCRE2_LITERAL : PCRE2_UTF | PCRE2_UCP;
  int error = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()),
                                   translated.size(), options, &error, &error_offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof(message));
    return absl::InvalidArgumentError(
        tokenizer_json::str_cat("cannot compile regex '", pattern, "' at offset ", error_offset,
                                ": ", reinterpret_cast<const char*>(message)));
  }
  // JIT is an optimisation only; the interpreter gives the same matches.
  bool jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  std::unique_ptr<Regex> re(new Regex());
  re->impl_ = std::make_unique<Impl>();
  re->impl_->code = code;
  re->impl_->jit = jit;
  return re;
}

void Regex::find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const {
  pcre2_match_data* md = thread_match_data();
  auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t start = 0;
  while (start <= text.size()) {
    // pcre2_jit_match skips the interpreter's option checks (input is valid UTF-8).
    int rc = impl_->jit ? pcre2_jit_match(impl_->code, subject, text.size(), start, 0, md, nullptr)
                        : pcre2_match(impl_->code, subject, text.size(), start, PCRE2_NO_UTF_CHECK,
                                      md, nullptr);
    if (rc < 0) break;  // PCRE2_ERROR_NOMATCH, or a resource limit: stop splitting.
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    size_t b = ov[0], e = ov[1];
    if (e > b) {
      out.emplace_back(b, e);
      start = e;
    } else {
      // Empty match: step over one whole code point.
      if (b >= text.size()) break;
      start = b + unicode::utf8_sequence_length(static_cast<uint8_t>(text[b]));
    }
  }
}

std::string Regex::replace_all(std::string_view text, std::string_view replacement) const {
  std::vector<std::pair<size_t, size_t>> matches;
  find_all(text, matches);
  if (matches.empty()) return std::string(text);
  std::string out;
  out.reserve(text.size());
  size_t prev = 0;
  for (auto [b, e] : matches) {
    out.append(text.substr(prev, b - prev));
    out.append(replacement);
    prev = e;
  }
  out.append(text.substr(prev));
  return out;
}

}  // namespace moeserve
