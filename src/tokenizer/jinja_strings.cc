#include "tokenizer/jinja_strings.h"

#include <cstdio>

#include "tokenizer/jinja_value.h"

namespace moeserve::jinja {

uint32_t decode_code_point(std::string_view s, size_t& pos) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  const uint8_t b0 = byte(pos);
  int n = 0;
  uint32_t cp = 0;
  if (b0 < 0x80) {
    ++pos;
    return b0;
  } else if ((b0 & 0xE0) == 0xC0) {
    n = 1;
    cp = b0 & 0x1F;
  } else if ((b0 & 0xF0) == 0xE0) {
    n = 2;
    cp = b0 & 0x0F;
  } else if ((b0 & 0xF8) == 0xF0) {
    n = 3;
    cp = b0 & 0x07;
  } else {
    ++pos;
    return b0;
  }
  if (pos + n >= s.size()) {
    ++pos;
    return b0;
  }
  for (int i = 1; i <= n; ++i) {
    if ((byte(pos + i) & 0xC0) != 0x80) {
      ++pos;
      return b0;
    }
    cp = (cp << 6) | (byte(pos + i) & 0x3F);
  }
  pos += n + 1;
  return cp;
}

void append_code_point(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::vector<size_t> code_point_offsets(std::string_view s) {
  std::vector<size_t> offsets;
  offsets.reserve(s.size() + 1);
  size_t pos = 0;
  while (pos < s.size()) {
    offsets.push_back(pos);
    decode_code_point(s, pos);
  }
  offsets.push_back(s.size());
  return offsets;
}

int64_t code_point_length(std::string_view s) {
  int64_t n = 0;
  for (char c : s) n += (static_cast<uint8_t>(c) & 0xC0) != 0x80;
  return n;
}

bool is_python_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

std::string py_strip(std::string_view s, const std::optional<std::string>& chars, bool left,
                     bool right) {
  std::vector<uint32_t> strip_set;
  if (chars) {
    size_t p = 0;
    while (p < chars->size()) strip_set.push_back(decode_code_point(*chars, p));
  }
  const auto strips = [&](uint32_t cp) {
    if (!chars) return is_python_space(cp);
    for (uint32_t c : strip_set)
      if (c == cp) return true;
    return false;
  };
  const std::vector<size_t> offs = code_point_offsets(s);
  size_t n = offs.size() - 1;
  size_t begin = 0, end = n;
  const auto cp_at = [&](size_t i) {
    size_t p = offs[i];
    return decode_code_point(s, p);
  };
  if (left)
    while (begin < end && strips(cp_at(begin))) ++begin;
  if (right)
    while (end > begin && strips(cp_at(end - 1))) --end;
  return std::string(s.substr(offs[begin], offs[end] - offs[begin]));
}

std::vector<std::string> py_split(std::string_view s, const std::optional<std::string>& sep,
                                  int64_t maxsplit) {
  std::vector<std::string> parts;
  if (sep) {
    size_t start = 0;
    while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
      size_t hit = s.find(*sep, start);
      if (hit == std::string_view::npos) break;
      parts.emplace_back(s.substr(start, hit - start));
      start = hit + sep->size();
    }
    parts.emplace_back(s.substr(start));
    return parts;
  }
  size_t pos = 0;
  while (pos < s.size()) {
    // Skip whitespace.
    size_t p = pos;
    while (p < s.size()) {
      size_t q = p;
      if (!is_python_space(decode_code_point(s, q))) break;
      p = q;
    }
    if (p >= s.size()) break;
    if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) {
      // Python keeps the remainder with trailing whitespace stripped.
      parts.push_back(py_strip(s.substr(p), std::nullopt, false, true));
      return parts;
    }
    size_t word_start = p;
    while (p < s.size()) {
      size_t q = p;
      if (is_python_space(decode_code_point(s, q))) break;
      p = q;
    }
    parts.emplace_back(s.substr(word_start, p - word_start));
    pos = p;
  }
  return parts;
}

std::string py_replace(std::string_view s, std::string_view from, std::string_view to,
                       int64_t count, size_t max_bytes) {
  std::string out;
  const auto check = [&] {
    if (out.size() > max_bytes) fail_size_limit(max_bytes);
  };
  if (from.empty()) {
    // Python inserts `to` between every code point (and at both ends).
    const std::vector<size_t> offs = code_point_offsets(s);
    int64_t done = 0;
    for (size_t i = 0; i < offs.size(); ++i) {
      if (count < 0 || done < count) {
        out += to;
        ++done;
        check();
      }
      if (i + 1 < offs.size()) out += s.substr(offs[i], offs[i + 1] - offs[i]);
    }
    return out;
  }
  size_t start = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    size_t hit = s.find(from, start);
    if (hit == std::string_view::npos) break;
    out += s.substr(start, hit - start);
    out += to;
    start = hit + from.size();
    ++done;
    check();
  }
  out += s.substr(start);
  check();
  return out;
}

std::string ascii_upper(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return out;
}

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::string py_capitalize(std::string_view s) {
  std::string out = ascii_lower(s);
  if (!out.empty() && out[0] >= 'a' && out[0] <= 'z') out[0] = static_cast<char>(out[0] - 32);
  return out;
}

std::string py_title(std::string_view s) {
  std::string out(s);
  bool prev_alpha = false;
  for (char& c : out) {
    const bool lower = c >= 'a' && c <= 'z';
    const bool upper = c >= 'A' && c <= 'Z';
    if (lower && !prev_alpha) c = static_cast<char>(c - 32);
    if (upper && prev_alpha) c = static_cast<char>(c + 32);
    prev_alpha = lower || upper;
  }
  return out;
}

std::string py_repr_string(std::string_view s) {
  const bool use_double =
      s.find('\'') != std::string_view::npos && s.find('"') == std::string_view::npos;
  const char quote = use_double ? '"' : '\'';
  std::string out(1, quote);
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == quote || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  out += quote;
  return out;
}

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (u < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", u);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

}  // namespace moeserve::jinja
