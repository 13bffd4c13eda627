#include "tokenizer/decoder.h"

#include "tokenizer/bpe_byte_level.h"
#include "tokenizer/pre_tokenizer_regex.h"

namespace moeserve {
namespace {

using namespace tokenizer_json;

class SequenceDecoder final : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> parts)
      : parts_(std::move(parts)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& p : parts_) p->decode_chain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

class ByteLevelDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const std::string& t : tokens) byte_level::decode_token(t, bytes);
    tokens.assign(1, std::move(bytes));
  }
};

// "<0x0A>" -> 0x0A; -1 for anything else.
int parse_byte_token(const std::string& t) {
  if (t.size() != 6 || t[0] != '<' || t[1] != '0' || t[2] != 'x' || t[5] != '>') return -1;
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  int hi = hex(t[3]), lo = hex(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

class ByteFallbackDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::string& t : tokens)
      if (int b = parse_byte_token(t); b >= 0) t.assign(1, static_cast<char>(b));
  }
};

class FuseDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const std::string& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

class ReplaceDecoder final : public Decoder {
 public:
  ReplaceDecoder(std::unique_ptr<Regex> pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::string& t : tokens) t = pattern_->replace_all(t, content_);
  }

 private:
  std::unique_ptr<Regex> pattern_;
  std::string content_;
};

class StripDecoder final : public Decoder {
 public:
  StripDecoder(std::string content, size_t start, size_t stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::string& t : tokens) {
      size_t b = 0, e = t.size();
      for (size_t n = 0;
           n < start_ && b + content_.size() <= e && t.compare(b, content_.size(), content_) == 0;
           ++n)
        b += content_.size();
      for (size_t n = 0; n < stop_ && e >= b + content_.size() &&
                         t.compare(e - content_.size(), content_.size(), content_) == 0;
           ++n)
        e -= content_.size();
      t = t.substr(b, e - b);
    }
  }

 private:
  std::string content_;
  size_t start_, stop_;
};

class MetaspaceDecoder final : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool strip_first)
      : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      const std::string& t = tokens[i];
      for (size_t at = 0; at < t.size();) {
        if (t.compare(at, replacement_.size(), replacement_) == 0) {
          out += ' ';
          at += replacement_.size();
        } else {
          out += t[at++];
        }
      }
      if (i == 0 && strip_first_ && !out.empty() && out[0] == ' ') out.erase(0, 1);
      tokens[i] = std::move(out);
    }
  }

 private:
  std::string replacement_;
  bool strip_first_;
};

}  // namespace

StatusOr<std::unique_ptr<Decoder>> make_decoder(const Json& config, std::string_view path) {
  if (config.is_null()) return std::unique_ptr<Decoder>();
  ASSIGN_OR_RETURN(std::string type, get_string(config, path, "type"));
  if (type == "Sequence") {
    ASSIGN_OR_RETURN(const Json* list, get_array(config, path, "decoders"));
    std::vector<std::unique_ptr<Decoder>> parts;
    for (size_t i = 0; i < list->size(); ++i) {
      ASSIGN_OR_RETURN(auto part, make_decoder((*list)[i], index(child(path, "decoders"), i)));
      if (part) parts.push_back(std::move(part));
    }
    return std::unique_ptr<Decoder>(new SequenceDecoder(std::move(parts)));
  }
  if (type == "ByteLevel") return std::unique_ptr<Decoder>(new ByteLevelDecoder());
  if (type == "ByteFallback") return std::unique_ptr<Decoder>(new ByteFallbackDecoder());
  if (type == "Fuse") return std::unique_ptr<Decoder>(new FuseDecoder());
  if (type == "Replace") {
    ASSIGN_OR_RETURN(Pattern pattern, get_pattern(config, path, "pattern"));
    ASSIGN_OR_RETURN(std::string content, get_string(config, path, "content"));
    auto re = Regex::compile(pattern.text, !pattern.is_regex);
    if (!re.ok()) return field_error(child(path, "pattern"), std::string(re.status().message()));
    return std::unique_ptr<Decoder>(new ReplaceDecoder(std::move(*re), std::move(content)));
  }
  if (type == "Strip") {
    ASSIGN_OR_RETURN(std::string content, get_string_or(config, path, "content", " "));
    ASSIGN_OR_RETURN(int64_t start, get_int_or(config, path, "start", 0));
    ASSIGN_OR_RETURN(int64_t stop, get_int_or(config, path, "stop", 0));
    if (start < 0 || stop < 0) return field_error(child(path, "start"), "/ stop must be >= 0");
    return std::unique_ptr<Decoder>(new StripDecoder(std::move(content), static_cast<size_t>(start),
                                                     static_cast<size_t>(stop)));
  }
  if (type == "Metaspace") {
    ASSIGN_OR_RETURN(std::string replacement,
                     get_string_or(config, path, "replacement", "\xE2\x96\x81"));
    ASSIGN_OR_RETURN(bool add_prefix_space, get_bool_or(config, path, "add_prefix_space", true));
    ASSIGN_OR_RETURN(std::string scheme, get_string_or(config, path, "prepend_scheme",
                                                       add_prefix_space ? "always" : "never"));
    return std::unique_ptr<Decoder>(
        new MetaspaceDecoder(std::move(replacement), scheme != "never"));
  }
  return field_error(child(path, "type"),
                     tokenizer_json::str_cat("has unsupported decoder '", type, "'"));
}

}  // namespace moeserve
