#include "tokenizer/jinja_lexer.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>

#include "tokenizer/jinja_strings.h"

namespace moeserve::jinja {
namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool is_ident_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_ident_char(char c) { return is_ident_start(c) || is_digit(c); }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class Lexer {
 public:
  Lexer(std::string_view source, const LexOptions& options) : src_(source), options_(options) {
    // Like Jinja's keep_trailing_newline=False: one trailing newline is dropped.
    if (!src_.empty() && src_.back() == '\n') src_.remove_suffix(1);
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i)
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
  }

  std::vector<Token> run() {
    size_t pos = 0;
    bool strip_next_space = false;   // previous tag ended with '-'
    bool trim_next_newline = false;  // previous block/comment tag, trim_blocks on
    while (pos <= src_.size()) {
      const size_t open = find_tag_open(pos);
      std::string text(src_.substr(pos, open - pos));
      if (strip_next_space) {
        size_t k = 0;
        while (k < text.size() && is_space(text[k])) ++k;
        text.erase(0, k);
      } else if (trim_next_newline && !text.empty() && text[0] == '\n') {
        text.erase(0, 1);
      }
      if (open == src_.size()) {
        emit_text(std::move(text), pos);
        break;
      }
      const char kind = src_[open + 1];
      const char modifier = open + 2 < src_.size() ? src_[open + 2] : '\0';
      if (modifier == '-') {
        while (!text.empty() && is_space(text.back())) text.pop_back();
      } else if (options_.lstrip_blocks && kind != '{' && modifier != '+') {
        size_t ws_begin = open;
        while (ws_begin > pos && (src_[ws_begin - 1] == ' ' || src_[ws_begin - 1] == '\t'))
          --ws_begin;
        if (ws_begin == 0 || src_[ws_begin - 1] == '\n') {
          const size_t n_strip = std::min(open - ws_begin, text.size());
          text.resize(text.size() - n_strip);
        }
      }
      emit_text(std::move(text), pos);
      const size_t body = open + 2 + ((modifier == '-' || modifier == '+') ? 1 : 0);
      if (kind == '#') {
        const size_t close = src_.find("#}", body);
        if (close == std::string_view::npos) fail_at(loc_of(open), "unclosed comment");
        strip_next_space = close > body && src_[close - 1] == '-';
        trim_next_newline = options_.trim_blocks;
        pos = close + 2;
        continue;
      }
      const bool is_stmt = kind == '%';
      push(is_stmt ? TokenKind::kStmtBegin : TokenKind::kExprBegin, is_stmt ? "{%" : "{{", open);
      bool minus_end = false;
      pos = lex_tag(body, is_stmt, open, minus_end);
      strip_next_space = minus_end;
      trim_next_newline = is_stmt && options_.trim_blocks;
    }
    Token eof;
    eof.kind = TokenKind::kEof;
    eof.loc = loc_of(src_.size());
    tokens_.push_back(std::move(eof));
    return std::move(tokens_);
  }

 private:
  size_t find_tag_open(size_t from) const {
    size_t p = from;
    while (true) {
      p = src_.find('{', p);
      if (p == std::string_view::npos || p + 1 >= src_.size()) return src_.size();
      const char c = src_[p + 1];
      if (c == '{' || c == '%' || c == '#') return p;
      ++p;
    }
  }

  // Tokens arrive in source order, so columns are counted on from the last
  // position instead of from the line start (linear, not quadratic, on long lines).
  SourceLoc loc_of(size_t offset) {
    const auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
    const size_t line_index = static_cast<size_t>(it - line_starts_.begin()) - 1;
    size_t from = line_starts_[line_index];
    int col = 1;
    if (last_line_ == line_index && last_offset_ <= offset) {
      from = last_offset_;
      col = last_col_;
    }
    col += static_cast<int>(code_point_length(src_.substr(from, offset - from)));
    last_line_ = line_index;
    last_offset_ = offset;
    last_col_ = col;
    return SourceLoc{static_cast<int>(line_index) + 1, col};
  }

  void push(TokenKind kind, std::string text, size_t offset) {
    Token t;
    t.kind = kind;
    t.text = std::move(text);
    t.loc = loc_of(offset);
    tokens_.push_back(std::move(t));
  }

  void emit_text(std::string text, size_t offset) {
    if (!text.empty()) push(TokenKind::kText, std::move(text), offset);
  }

  // Lexes the inside of a {{ }} or {% %} tag starting at `p`; returns the
  // offset just past the closing delimiter.
  size_t lex_tag(size_t p, bool is_stmt, size_t open, bool& minus_end) {
    const char closer = is_stmt ? '%' : '}';
    int depth = 0;
    while (true) {
      while (p < src_.size() && is_space(src_[p])) ++p;
      if (p >= src_.size())
        fail_at(loc_of(open), is_stmt ? "unclosed '{%' tag" : "unclosed '{{' tag");
      if (depth == 0) {
        const bool minus =
            src_[p] == '-' && p + 2 < src_.size() && src_[p + 1] == closer && src_[p + 2] == '}';
        if (minus || (src_[p] == closer && p + 1 < src_.size() && src_[p + 1] == '}')) {
          minus_end = minus;
          push(is_stmt ? TokenKind::kStmtEnd : TokenKind::kExprEnd, is_stmt ? "%}" : "}}", p);
          return p + (minus ? 3 : 2);
        }
      }
      const char c = src_[p];
      if (is_ident_start(c)) {
        size_t q = p;
        while (q < src_.size() && is_ident_char(src_[q])) ++q;
        push(TokenKind::kName, std::string(src_.substr(p, q - p)), p);
        p = q;
      } else if (is_digit(c)) {
        p = lex_number(p);
      } else if (c == '\'' || c == '"') {
        p = lex_string(p);
      } else {
        static constexpr std::string_view kTwoChar[] = {"**", "//", "==", "!=", "<=", ">="};
        std::string_view two = src_.substr(p, 2);
        bool matched = false;
        for (std::string_view op : kTwoChar) {
          if (two == op) {
            push(TokenKind::kOp, std::string(op), p);
            p += 2;
            matched = true;
            break;
          }
        }
        if (matched) continue;
        static constexpr std::string_view kOneChar = "+-*/%~<>=()[]{},.:|";
        if (kOneChar.find(c) == std::string_view::npos) {
          fail_at(loc_of(p), std::string("unexpected character '") + c + "'");
        }
        if (c == '(' || c == '[' || c == '{') ++depth;
        if (c == ')' || c == ']' || c == '}') {
          if (depth == 0) fail_at(loc_of(p), std::string("unmatched '") + c + "'");
          --depth;
        }
        push(TokenKind::kOp, std::string(1, c), p);
        ++p;
      }
    }
  }

  size_t lex_number(size_t p) {
    size_t q = p;
    while (q < src_.size() && is_digit(src_[q])) ++q;
    bool is_float = false;
    if (q + 1 < src_.size() && src_[q] == '.' && is_digit(src_[q + 1])) {
      is_float = true;
      ++q;
      while (q < src_.size() && is_digit(src_[q])) ++q;
    }
    if (q < src_.size() && (src_[q] == 'e' || src_[q] == 'E')) {
      size_t r = q + 1;
      if (r < src_.size() && (src_[r] == '+' || src_[r] == '-')) ++r;
      if (r < src_.size() && is_digit(src_[r])) {
        is_float = true;
        q = r;
        while (q < src_.size() && is_digit(src_[q])) ++q;
      }
    }
    const std::string text(src_.substr(p, q - p));
    Token t;
    t.text = text;
    t.loc = loc_of(p);
    if (is_float) {
      t.kind = TokenKind::kFloat;
      t.float_value = std::strtod(text.c_str(), nullptr);
    } else {
      t.kind = TokenKind::kInt;
      errno = 0;
      t.int_value = std::strtoll(text.c_str(), nullptr, 10);
      if (errno == ERANGE) fail_at(t.loc, "integer literal too large");
    }
    tokens_.push_back(std::move(t));
    return q;
  }

  size_t lex_string(size_t p) {
    const char quote = src_[p];
    std::string value;
    size_t q = p + 1;
    while (true) {
      if (q >= src_.size()) fail_at(loc_of(p), "unterminated string literal");
      const char c = src_[q];
      if (c == quote) break;
      if (c != '\\' || q + 1 >= src_.size()) {
        value += c;
        ++q;
        continue;
      }
      const char e = src_[q + 1];
      q += 2;
      switch (e) {
        case 'n': value += '\n'; break;
        case 't': value += '\t'; break;
        case 'r': value += '\r'; break;
        case 'b': value += '\b'; break;
        case 'f': value += '\f'; break;
        case 'v': value += '\v'; break;
        case 'a': value += '\a'; break;
        case '0': value += '\0'; break;
        case '\\': value += '\\'; break;
        case '\'': value += '\''; break;
        case '"': value += '"'; break;
        case '\n': break;  // line continuation
        case 'x':
        case 'u':
        case 'U': {
          const int n_digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          uint32_t cp = 0;
          for (int i = 0; i < n_digits; ++i) {
            const int h = q < src_.size() ? hex_value(src_[q]) : -1;
            if (h < 0) fail_at(loc_of(q), "bad escape in string literal");
            cp = cp * 16 + static_cast<uint32_t>(h);
            ++q;
          }
          if (cp > 0x10FFFF) fail_at(loc_of(q), "bad escape in string literal");
          append_code_point(value, cp);
          break;
        }
        default:  // Python keeps unknown escapes verbatim
          value += '\\';
          value += e;
      }
    }
    Token t;
    t.kind = TokenKind::kString;
    t.text = std::move(value);
    t.loc = loc_of(p);
    tokens_.push_back(std::move(t));
    return q + 1;
  }

  std::string_view src_;
  LexOptions options_;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
  size_t last_line_ = SIZE_MAX;  // memo for loc_of
  size_t last_offset_ = 0;
  int last_col_ = 1;
};

}  // namespace

std::vector<Token> tokenize(std::string_view source, const LexOptions& options) {
  return Lexer(source, options).run();
}

}  // namespace moeserve::jinja
