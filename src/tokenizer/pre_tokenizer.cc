#include "tokenizer/pre_tokenizer.h"

#include <algorithm>

#include "tokenizer/bpe_byte_level.h"
#include "tokenizer/pre_tokenizer_regex.h"
#include "tokenizer/unicode.h"

namespace moeserve {
namespace {

using namespace tokenizer_json;
using Ranges = std::vector<std::pair<size_t, size_t>>;

// GPT-2's word pattern, used by ByteLevel when `use_regex` is set.
constexpr std::string_view kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

// Applies a regex split to every piece.
class RegexSplitter {
 public:
  RegexSplitter(std::unique_ptr<Regex> re, SplitBehavior behavior, bool invert)
      : re_(std::move(re)), behavior_(behavior), invert_(invert) {}
  void apply(PreTokenized& p) const {
    if (p.byte_level) p.materialize_byte_level();
    std::vector<Span> out;
    out.reserve(p.spans.size() * 2);
    Ranges matches;
    for (size_t i = 0; i < p.spans.size(); ++i) {
      matches.clear();
      std::string_view piece = p.piece(i);
      re_->find_all(piece, matches);
      split_with_behavior(p.spans[i].first, piece.size(), matches, behavior_, invert_, out);
    }
    p.spans.swap(out);
  }

 private:
  std::unique_ptr<Regex> re_;
  SplitBehavior behavior_;
  bool invert_;
};

// Rebuilds `p.text` from the rewritten pieces `rewrite(piece, index, out)`.
template <typename Rewrite>
void rewrite_pieces(PreTokenized& p, Rewrite rewrite) {
  std::string text;
  text.reserve(p.text.size() + p.spans.size() * 4);
  std::vector<Span> spans;
  spans.reserve(p.spans.size());
  for (size_t i = 0; i < p.spans.size(); ++i) {
    auto begin = static_cast<uint32_t>(text.size());
    rewrite(p.piece(i), i, text);
    spans.emplace_back(begin, static_cast<uint32_t>(text.size()));
  }
  p.text.swap(text);
  p.spans.swap(spans);
}

class SequencePreTokenizer final : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts)
      : parts_(std::move(parts)) {}
  void split(PreTokenized& p, bool first_section) const override {
    for (const auto& part : parts_) part->split(p, first_section);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

class RegexPreTokenizer final : public PreTokenizer {
 public:
  explicit RegexPreTokenizer(RegexSplitter splitter) : splitter_(std::move(splitter)) {}
  void split(PreTokenized& p, bool) const override { splitter_.apply(p); }

 private:
  RegexSplitter splitter_;
};

class ByteLevelPreTokenizer final : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::unique_ptr<RegexSplitter> splitter)
      : add_prefix_space_(add_prefix_space), splitter_(std::move(splitter)) {}
  void split(PreTokenized& p, bool) const override {
    if (p.byte_level) p.materialize_byte_level();
    if (add_prefix_space_) {
      rewrite_pieces(p, [](std::string_view piece, size_t, std::string& out) {
        if (piece.empty() || piece[0] != ' ') out += ' ';
        out.append(piece);
      });
    }
    if (splitter_) splitter_->apply(p);
    p.byte_level = true;
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<RegexSplitter> splitter_;
};

class MetaspacePreTokenizer final : public PreTokenizer {
 public:
  enum class Prepend { kAlways, kFirst, kNever };
  MetaspacePreTokenizer(std::string replacement, Prepend prepend, bool split)
      : replacement_(std::move(replacement)), prepend_(prepend), split_(split) {}
  void split(PreTokenized& p, bool first_section) const override {
    if (p.byte_level) p.materialize_byte_level();
    rewrite_pieces(p, [&](std::string_view piece, size_t i, std::string& out) {
      bool first = first_section && i == 0;
      if ((prepend_ == Prepend::kAlways || (prepend_ == Prepend::kFirst && first)) &&
          !piece.starts_with(replacement_) && !(piece.starts_with(' ')))
        out += replacement_;
      for (char c : piece) {
        if (c == ' ')
          out += replacement_;
        else
          out += c;
      }
    });
    if (!split_) return;
    std::vector<Span> out;
    Ranges matches;
    for (size_t i = 0; i < p.spans.size(); ++i) {
      std::string_view piece = p.piece(i);
      matches.clear();
      for (size_t at = piece.find(replacement_); at != std::string::npos;
           at = piece.find(replacement_, at + replacement_.size()))
        matches.emplace_back(at, at + replacement_.size());
      split_with_behavior(p.spans[i].first, piece.size(), matches, SplitBehavior::kMergedWithNext,
                          false, out);
    }
    p.spans.swap(out);
  }

 private:
  std::string replacement_;
  Prepend prepend_;
  bool split_;
};

StatusOr<SplitBehavior> parse_behavior(const Json& config, std::string_view path) {
  ASSIGN_OR_RETURN(std::string b, get_string_or(config, path, "behavior", "Isolated"));
  if (b == "Removed") return SplitBehavior::kRemoved;
  if (b == "Isolated") return SplitBehavior::kIsolated;
  if (b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (b == "Contiguous") return SplitBehavior::kContiguous;
  return field_error(child(path, "behavior"),
                     tokenizer_json::str_cat("has unknown value '", b, "'"));
}

StatusOr<std::unique_ptr<PreTokenizer>> regex_pre_tokenizer(std::string_view pattern, bool literal,
                                                            SplitBehavior behavior, bool invert,
                                                            std::string_view path) {
  auto re = Regex::compile(pattern, literal);
  if (!re.ok()) return field_error(path, std::string(re.status().message()));
  return std::unique_ptr<PreTokenizer>(
      new RegexPreTokenizer(RegexSplitter(std::move(*re), behavior, invert)));
}

}  // namespace

void PreTokenized::materialize_byte_level() {
  rewrite_pieces(*this, [](std::string_view piece, size_t, std::string& out) {
    out += byte_level::encode(piece);
  });
  byte_level = false;
}

void split_with_behavior(uint32_t base, size_t length, const Ranges& matches,
                         SplitBehavior behavior, bool invert, std::vector<Span>& out) {
  if (behavior == SplitBehavior::kIsolated) {  // the common case: every segment is a piece
    size_t prev = 0;
    for (auto [b, e] : matches) {
      if (b > prev)
        out.emplace_back(base + static_cast<uint32_t>(prev), base + static_cast<uint32_t>(b));
      out.emplace_back(base + static_cast<uint32_t>(b), base + static_cast<uint32_t>(e));
      prev = e;
    }
    if (prev < length)
      out.emplace_back(base + static_cast<uint32_t>(prev), base + static_cast<uint32_t>(length));
    return;
  }
  // Segments covering the piece: (begin, end, is_match).
  struct Segment {
    size_t begin, end;
    bool is_match;
  };
  // Most pieces need only a few segments; avoid the heap for them.
  thread_local std::vector<Segment> segs, merged;
  segs.clear();
  merged.clear();
  size_t prev = 0;
  for (auto [b, e] : matches) {
    if (b > prev) segs.push_back({prev, b, invert});
    segs.push_back({b, e, !invert});
    prev = e;
  }
  if (prev < length || segs.empty()) segs.push_back({prev, length, invert});

  switch (behavior) {
    case SplitBehavior::kRemoved:
      for (const Segment& s : segs)
        if (!s.is_match) merged.push_back(s);
      break;
    case SplitBehavior::kIsolated: merged = segs; break;
    case SplitBehavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const Segment& s : segs) {
        if (s.is_match && !previous_match && !merged.empty())
          merged.back().end = s.end;
        else
          merged.push_back(s);
        previous_match = s.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool next_match = false;
      for (size_t i = segs.size(); i-- > 0;) {
        const Segment& s = segs[i];
        if (s.is_match && !next_match && !merged.empty())
          merged.back().begin = s.begin;
        else
          merged.push_back(s);
        next_match = s.is_match;
      }
      std::reverse(merged.begin(), merged.end());
      break;
    }
    case SplitBehavior::kContiguous: {
      bool previous_match = false;
      for (const Segment& s : segs) {
        if (s.is_match == previous_match && !merged.empty())
          merged.back().end = s.end;
        else
          merged.push_back(s);
        previous_match = s.is_match;
      }
      break;
    }
  }
  for (const Segment& s : merged)
    if (s.end > s.begin)
      out.emplace_back(base + static_cast<uint32_t>(s.begin), base + static_cast<uint32_t>(s.end));
}

StatusOr<std::unique_ptr<PreTokenizer>> make_pre_tokenizer(const Json& config,
                                                           std::string_view path) {
  if (config.is_null()) return std::unique_ptr<PreTokenizer>();
  ASSIGN_OR_RETURN(std::string type, get_string(config, path, "type"));
  if (type == "Sequence") {
    ASSIGN_OR_RETURN(const Json* list, get_array(config, path, "pretokenizers"));
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (size_t i = 0; i < list->size(); ++i) {
      ASSIGN_OR_RETURN(auto part,
                       make_pre_tokenizer((*list)[i], index(child(path, "pretokenizers"), i)));
      if (part) parts.push_back(std::move(part));
    }
    return std::unique_ptr<PreTokenizer>(new SequencePreTokenizer(std::move(parts)));
  }
  if (type == "Split") {
    ASSIGN_OR_RETURN(Pattern pattern, get_pattern(config, path, "pattern"));
    ASSIGN_OR_RETURN(SplitBehavior behavior, parse_behavior(config, path));
    ASSIGN_OR_RETURN(bool invert, get_bool_or(config, path, "invert", false));
    return regex_pre_tokenizer(pattern.text, !pattern.is_regex, behavior, invert,
                               child(path, "pattern"));
  }
  if (type == "ByteLevel") {
    ASSIGN_OR_RETURN(bool add_prefix_space, get_bool_or(config, path, "add_prefix_space", true));
    ASSIGN_OR_RETURN(bool use_regex, get_bool_or(config, path, "use_regex", true));
    std::unique_ptr<RegexSplitter> splitter;
    if (use_regex) {
      auto re = Regex::compile(kGpt2Pattern);
      if (!re.ok()) return re.status();
      splitter = std::make_unique<RegexSplitter>(std::move(*re), SplitBehavior::kIsolated, false);
    }
    return std::unique_ptr<PreTokenizer>(
        new ByteLevelPreTokenizer(add_prefix_space, std::move(splitter)));
  }
  if (type == "Digits") {
    ASSIGN_OR_RETURN(bool individual, get_bool_or(config, path, "individual_digits", false));
    return regex_pre_tokenizer(individual ? "\\p{N}" : "\\p{N}+", false, SplitBehavior::kIsolated,
                               false, path);
  }
  if (type == "Whitespace") {
    return regex_pre_tokenizer("\\w+|[^\\w\\s]+", false, SplitBehavior::kRemoved, true, path);
  }
  if (type == "WhitespaceSplit") {
    return regex_pre_tokenizer("\\s+", false, SplitBehavior::kRemoved, false, path);
  }
  if (type == "Punctuation") {
    ASSIGN_OR_RETURN(SplitBehavior behavior, parse_behavior(config, path));
    return regex_pre_tokenizer("[\\p{P}\\x21-\\x2F\\x3A-\\x40\\x5B-\\x60\\x7B-\\x7E]", false,
                               behavior, false, path);
  }
  if (type == "Metaspace") {
    ASSIGN_OR_RETURN(std::string replacement,
                     get_string_or(config, path, "replacement", "\xE2\x96\x81"));
    ASSIGN_OR_RETURN(bool add_prefix_space, get_bool_or(config, path, "add_prefix_space", true));
    ASSIGN_OR_RETURN(std::string scheme, get_string_or(config, path, "prepend_scheme",
                                                       add_prefix_space ? "always" : "never"));
    ASSIGN_OR_RETURN(bool split, get_bool_or(config, path, "split", true));
    MetaspacePreTokenizer::Prepend prepend;
    if (scheme == "always")
      prepend = MetaspacePreTokenizer::Prepend::kAlways;
    else if (scheme == "first")
      prepend = MetaspacePreTokenizer::Prepend::kFirst;
    else if (scheme == "never")
      prepend = MetaspacePreTokenizer::Prepend::kNever;
    else
      return field_error(child(path, "prepend_scheme"),
                         tokenizer_json::str_cat("has unknown value '", scheme, "'"));
    return std::unique_ptr<PreTokenizer>(
        new MetaspacePreTokenizer(std::move(replacement), prepend, split));
  }
  return field_error(child(path, "type"),
                     tokenizer_json::str_cat("has unsupported pre-tokenizer '", type, "'"));
}

}  // namespace moeserve
