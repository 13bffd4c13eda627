#include "tokenizer/unicode.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "tokenizer/unicode_tables.h"

namespace moeserve::unicode {
namespace {

using unicode_tables::tables;

constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28;
constexpr char32_t kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

uint8_t combining_class(char32_t cp) {
  if (cp < 0x300) return 0;
  const auto& r = tables().ccc;
  auto it =
      std::upper_bound(r.begin(), r.end(), cp, [](char32_t c, const auto& e) { return c < e.lo; });
  if (it == r.begin()) return 0;
  --it;
  return cp <= it->hi ? it->ccc : 0;
}

bool in_ranges(std::span<const unicode_tables::CpRange> r, char32_t cp) {
  auto it =
      std::upper_bound(r.begin(), r.end(), cp, [](char32_t c, const auto& e) { return c < e.lo; });
  if (it == r.begin()) return false;
  --it;
  return cp <= it->hi;
}

const unicode_tables::DecompEntry* find_decomp(std::span<const unicode_tables::DecompEntry> t,
                                               char32_t cp) {
  auto it =
      std::lower_bound(t.begin(), t.end(), cp, [](const auto& e, char32_t c) { return e.cp < c; });
  return it != t.end() && it->cp == cp ? &*it : nullptr;
}

void decompose(char32_t cp, bool compat, std::vector<char32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    char32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  const auto& t = tables();
  if (const auto* e = find_decomp(t.canon, cp)) {
    for (uint32_t i = 0; i < e->n; ++i) decompose(t.canon_pool[e->offset + i], compat, out);
    return;
  }
  if (compat) {
    if (const auto* e = find_decomp(t.compat, cp)) {
      for (uint32_t i = 0; i < e->n; ++i) decompose(t.compat_pool[e->offset + i], compat, out);
      return;
    }
  }
  out.push_back(cp);
}

// Returns 0 when the pair does not compose.
char32_t compose_pair(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount)
    return a + (b - kTBase);
  const auto& c = tables().compositions;
  auto it = std::lower_bound(c.begin(), c.end(), std::pair{a, b}, [](const auto& e, auto key) {
    return e.first != key.first ? e.first < key.first : e.second < key.second;
  });
  return it != c.end() && it->first == a && it->second == b ? it->composite : 0;
}

void canonical_order(std::vector<char32_t>& cps) {
  // Stable sort of each run of non-starters by combining class.
  size_t i = 0;
  while (i < cps.size()) {
    if (combining_class(cps[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < cps.size() && combining_class(cps[j]) != 0) ++j;
    std::stable_sort(cps.begin() + i, cps.begin() + j, [](char32_t a, char32_t b) {
      return combining_class(a) < combining_class(b);
    });
    i = j;
  }
}

void compose(std::vector<char32_t>& cps) {
  if (cps.empty()) return;
  size_t starter = 0;
  bool have_starter = combining_class(cps[0]) == 0;
  size_t out = 1;
  int last_ccc = have_starter ? 0 : 256;
  for (size_t i = 1; i < cps.size(); ++i) {
    char32_t cp = cps[i];
    int ccc = combining_class(cp);
    // Blocked when a character of equal or higher class sits between.
    bool blocked = out - 1 != starter && (last_ccc == 0 || last_ccc >= ccc);
    if (have_starter && !blocked) {
      if (char32_t c = compose_pair(cps[starter], cp)) {
        cps[starter] = c;
        continue;
      }
    }
    if (ccc == 0) {
      starter = out;
      have_starter = true;
    }
    last_ccc = ccc;
    cps[out++] = cp;
  }
  cps.resize(out);
}

}  // namespace

char32_t next_code_point(std::string_view s, size_t& pos) {
  auto b0 = static_cast<uint8_t>(s[pos]);
  if (b0 < 0x80) {
    ++pos;
    return b0;
  }
  size_t n = utf8_sequence_length(b0);
  if (n == 1 || pos + n > s.size()) {
    ++pos;
    return kReplacementChar;
  }
  char32_t cp = b0 & (0x7F >> n);
  for (size_t i = 1; i < n; ++i) {
    auto b = static_cast<uint8_t>(s[pos + i]);
    if ((b & 0xC0) != 0x80) {
      ++pos;
      return kReplacementChar;
    }
    cp = (cp << 6) | (b & 0x3F);
  }
  static constexpr char32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    ++pos;
    return kReplacementChar;
  }
  pos += n;
  return cp;
}

void append_utf8(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string to_valid_utf8(std::string_view bytes, bool stop_at_incomplete, size_t* consumed) {
  std::string out;
  out.reserve(bytes.size());
  size_t i = 0;
  while (i < bytes.size()) {
    auto b0 = static_cast<uint8_t>(bytes[i]);
    if (b0 < 0x80) {
      out.push_back(static_cast<char>(b0));
      ++i;
      continue;
    }
    // Valid second-byte range per lead byte (Unicode Table 3-7).
    uint8_t lo = 0x80, hi = 0xBF;
    size_t n = 0;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
      n = 2;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
      n = 3;
      if (b0 == 0xE0) lo = 0xA0;
      if (b0 == 0xED) hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      n = 4;
      if (b0 == 0xF0) lo = 0x90;
      if (b0 == 0xF4) hi = 0x8F;
    }
    if (n == 0) {
      append_utf8(kReplacementChar, out);
      ++i;
      continue;
    }
    size_t k = 1;  // bytes of the maximal valid prefix
    while (k < n && i + k < bytes.size()) {
      auto b = static_cast<uint8_t>(bytes[i + k]);
      if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) break;
      ++k;
    }
    if (k == n) {
      out.append(bytes.substr(i, n));
    } else if (i + k == bytes.size() && stop_at_incomplete) {
      break;  // may still complete with more bytes
    } else {
      append_utf8(kReplacementChar, out);
    }
    i += k;
  }
  if (consumed) *consumed = i;
  return out;
}

bool is_valid_utf8(std::string_view bytes) {
  size_t i = 0;
  while (i < bytes.size()) {
    // Skip ASCII eight bytes at a time.
    while (i + 8 <= bytes.size()) {
      uint64_t w;
      std::memcpy(&w, bytes.data() + i, 8);
      if (w & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= bytes.size()) break;
    if (static_cast<uint8_t>(bytes[i]) < 0x80) {
      ++i;
      continue;
    }
    size_t pos = i;
    if (next_code_point(bytes, pos) == kReplacementChar && bytes.compare(i, 3, "\xEF\xBF\xBD") != 0)
      return false;
    i = pos;
  }
  return true;
}

std::string normalize(std::string_view text, NormalForm form) {
  bool compat = form == NormalForm::kNfkc || form == NormalForm::kNfkd;
  bool comp = form == NormalForm::kNfc || form == NormalForm::kNfkc;
  const auto& unstable = compat ? tables().nfkc_unstable : tables().nfc_unstable;
  bool stable = true;
  for (size_t pos = 0; pos < text.size();) {
    if (static_cast<uint8_t>(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    char32_t cp = next_code_point(text, pos);
    if (!comp || in_ranges(unstable, cp)) {
      stable = false;
      break;
    }
  }
  if (stable) return std::string(text);
  std::vector<char32_t> cps;
  cps.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) decompose(next_code_point(text, pos), compat, cps);
  canonical_order(cps);
  if (comp) compose(cps);
  std::string out;
  out.reserve(text.size());
  for (char32_t cp : cps) append_utf8(cp, out);
  return out;
}

bool is_js_whitespace(char32_t cp) {
  switch (cp) {
    case 0x09:
    case 0x0A:
    case 0x0B:
    case 0x0C:
    case 0x0D:
    case 0x20:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
    case 0xFEFF: return true;
    default: return cp >= 0x2000 && cp <= 0x200A;
  }
}

}  // namespace moeserve::unicode
