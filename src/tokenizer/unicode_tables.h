// Unicode data for NFC/NFKC, generated into unicode_tables.cc by
// unicode_tables_gen.py. All arrays are sorted by their first field.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace moeserve::unicode_tables {

struct CccRange {
  char32_t lo, hi;
  uint8_t ccc;  // canonical combining class, never 0 here
};
struct DecompEntry {
  char32_t cp;
  uint32_t offset;  // into the matching pool
  uint32_t n;
};
struct Composition {
  char32_t first, second, composite;
};
struct CpRange {
  char32_t lo, hi;
};

struct Tables {
  std::span<const CccRange> ccc;
  std::span<const DecompEntry> canon;  // one level, canonical
  const char32_t* canon_pool;
  std::span<const DecompEntry> compat;  // one level, compatibility-only
  const char32_t* compat_pool;
  std::span<const Composition> compositions;  // primary composites only
  // Code points that may change under NFC / NFKC (non-starters, decomposables,
  // composition seconds). Text without any of them is already normalized.
  std::span<const CpRange> nfc_unstable;
  std::span<const CpRange> nfkc_unstable;
};

const Tables& tables();

}  // namespace moeserve::unicode_tables
