// mma.sync and ldmatrix under the emulator: warp collectives over all 32 lanes that gather
// every lane's fragment registers into whole matrices, as the PTX ISA's fragment layouts
// ("Matrix Fragments for mma.m16n8k16 / mma.m16n8k32", "ldmatrix") place them, compute, and
// scatter the result the same way. With groupID = lane >> 2 and tig = lane % 4:
//   m16n8k16 A (16-bit, a0..a7, two per .b32 register):
//     row = groupID for a0,a1,a4,a5, groupID+8 for a2,a3,a6,a7
//     col = tig*2 + (i & 1), +8 for i >= 4
//   m16n8k16 B (b0..b3): row = tig*2 + (i & 1), +8 for i >= 2; col = groupID
//   m16n8k32 A (8-bit, a0..a15, four per register):
//     row = groupID for a0..a3, a8..a11, groupID+8 otherwise
//     col = tig*4 + (i & 3), +16 for i >= 8
//   m16n8k32 B (b0..b7): row = tig*4 + (i & 3), +16 for i >= 4; col = groupID
//   C/D (c0..c3): row = groupID for c0,c1, groupID+8 for c2,c3; col = tig*2 + (i & 1)
// Products of 16- and 8-bit floats are exact in double; the sum over k and C is rounded to
// fp32 once. The GPU's accumulation order is unspecified, so results may differ from it in
// the last bits of fp32; integer results are exact (wrapping, no .satfinite).
#include "kernels/simt/emu/tensor_core.h"

#include <cstring>

#include "kernels/simt/emu/block_state.h"

namespace simt {
namespace emu {
namespace {

enum class InType : uint8_t { kBf16, kF16, kS8, kE4m3 };

struct MmaLane {
  const uint32_t* a;  // [4]
  const uint32_t* b;  // [2]
  const void* c;      // [4] float or int32
  void* d;            // [4] float or int32; may alias c
};

double decode16(uint32_t bits, InType type) {
  const auto h = static_cast<uint16_t>(bits);
  if (type == InType::kBf16) {
    const uint32_t f = uint32_t{h} << 16;
    float v;
    std::memcpy(&v, &f, 4);
    return v;
  }
  __half_raw raw;
  raw.x = h;
  return static_cast<double>(__half2float(__half(raw)));
}

double decode8(uint32_t bits, InType type) {
  const auto byte = static_cast<uint8_t>(bits);
  if (type == InType::kS8) return static_cast<int8_t>(byte);
  __nv_fp8_e4m3 v;
  v.__x = byte;
  return static_cast<double>(static_cast<float>(v));
}

template <InType kType>
void resolve_mma(BlockState&, ThreadState* const*, void* const* data, unsigned) {
  constexpr bool k8bit = kType == InType::kS8 || kType == InType::kE4m3;
  constexpr int kK = k8bit ? 32 : 16;
  double a[16][32];
  double b[32][8];
  double c[16][8];
  for (int lane = 0; lane < 32; ++lane) {
    const MmaLane& l = *static_cast<const MmaLane*>(data[lane]);
    const int group = lane >> 2;
    const int tig = lane % 4;
    if constexpr (k8bit) {
      for (int i = 0; i < 16; ++i) {
        const int row = (i < 4 || (i >= 8 && i < 12)) ? group : group + 8;
        const int col = tig * 4 + (i & 3) + (i >= 8 ? 16 : 0);
        a[row][col] = decode8(l.a[i / 4] >> (8 * (i % 4)), kType);
      }
      for (int i = 0; i < 8; ++i) {
        b[tig * 4 + (i & 3) + (i >= 4 ? 16 : 0)][group] =
            decode8(l.b[i / 4] >> (8 * (i % 4)), kType);
      }
    } else {
      for (int i = 0; i < 8; ++i) {
        const int row = (i < 2 || (i >= 4 && i < 6)) ? group : group + 8;
        const int col = tig * 2 + (i & 1) + (i >= 4 ? 8 : 0);
        a[row][col] = decode16(l.a[i / 2] >> (16 * (i % 2)), kType);
      }
      for (int i = 0; i < 4; ++i) {
        b[tig * 2 + (i & 1) + (i >= 2 ? 8 : 0)][group] =
            decode16(l.b[i / 2] >> (16 * (i % 2)), kType);
      }
    }
    for (int i = 0; i < 4; ++i) {
      const int row = i < 2 ? group : group + 8;
      const int col = tig * 2 + (i & 1);
      if constexpr (kType == InType::kS8) {
        c[row][col] = static_cast<const int32_t*>(l.c)[i];
      } else {
        c[row][col] = static_cast<const float*>(l.c)[i];
      }
    }
  }
  for (int lane = 0; lane < 32; ++lane) {
    const MmaLane& l = *static_cast<const MmaLane*>(data[lane]);
    const int group = lane >> 2;
    const int tig = lane % 4;
    for (int i = 0; i < 4; ++i) {
      const int row = i < 2 ? group : group + 8;
      const int col = tig * 2 + (i & 1);
      if constexpr (kType == InType::kS8) {
        // s32 accumulation wraps; the int64 sum of 32 s8 products plus c cannot overflow.
        int64_t acc = static_cast<int64_t>(c[row][col]);
        for (int k = 0; k < kK; ++k) acc += static_cast<int64_t>(a[row][k] * b[k][col]);
        static_cast<int32_t*>(l.d)[i] = static_cast<int32_t>(static_cast<uint32_t>(acc));
      } else {
        double acc = c[row][col];
        for (int k = 0; k < kK; ++k) acc += a[row][k] * b[k][col];
        static_cast<float*>(l.d)[i] = static_cast<float>(acc);
      }
    }
  }
}

template <InType kType>
void mma(const uint32_t* a, const uint32_t* b, const void* c, void* d, const char* name,
         const Loc& loc) {
  ThreadState& t = *tls_thread;
  if (t.block->warps[t.warp].existing != 0xffffffffu) {
    fail(t, describe_thread(t) + " " + name + " (" + describe_loc(loc) +
                ") in a partial warp: .aligned needs all 32 lanes");
  }
  MmaLane me{a, b, c, d};
  warp_collective(name, resolve_mma<kType>, 0xffffffffu, &me, loc);
}

struct LdmatrixLane {
  const void* row;
  uint32_t* regs;
  int n;
  bool trans;
  Loc loc;
};

void resolve_ldmatrix(BlockState& b, ThreadState* const* lanes, void* const* data, unsigned) {
  const auto& first = *static_cast<const LdmatrixLane*>(data[0]);
  uint16_t m[4][8][8];
  // Lane 8·i + r supplies the address of row r of matrix i.
  for (int i = 0; i < first.n; ++i) {
    for (int r = 0; r < 8; ++r) {
      const int src = 8 * i + r;
      const auto& l = *static_cast<const LdmatrixLane*>(data[src]);
      if (l.n != first.n || l.trans != first.trans) {
        fail(*tls_thread, "ldmatrix lanes disagree on .x" + std::to_string(first.n) + "/.trans (" +
                              describe_loc(l.loc) + ")");
      }
      if (!in_shared(b, l.row, 16) || reinterpret_cast<uintptr_t>(l.row) % 16 != 0) {
        fail(*tls_thread, describe_thread(*lanes[src]) + " ldmatrix (" + describe_loc(l.loc) +
                              ") row address is not 16-byte aligned shared memory");
      }
      race_access(*lanes[src], l.row, 16, false);
      std::memcpy(m[i][r], l.row, 16);
    }
  }
  // Lane l receives, of each matrix, row l/4, columns 2·(l%4) and 2·(l%4)+1 (low half first);
  // .trans delivers the transposed matrix.
  for (int lane = 0; lane < 32; ++lane) {
    const auto& l = *static_cast<const LdmatrixLane*>(data[lane]);
    const int row = lane / 4;
    const int col = 2 * (lane % 4);
    for (int i = 0; i < first.n; ++i) {
      const uint16_t lo = first.trans ? m[i][col][row] : m[i][row][col];
      const uint16_t hi = first.trans ? m[i][col + 1][row] : m[i][row][col + 1];
      l.regs[i] = uint32_t{lo} | uint32_t{hi} << 16;
    }
  }
}

}  // namespace

void ldmatrix(uint32_t* regs, int n_matrices, bool trans, const void* smem_row, const Loc& loc) {
  ThreadState& t = *tls_thread;
  if (t.block->warps[t.warp].existing != 0xffffffffu) {
    fail(t, describe_thread(t) + " ldmatrix (" + describe_loc(loc) +
                ") in a partial warp: .aligned needs all 32 lanes");
  }
  LdmatrixLane me{smem_row, regs, n_matrices, trans, loc};
  warp_collective("ldmatrix", resolve_ldmatrix, 0xffffffffu, &me, loc);
}

}  // namespace emu

void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                       const float (&c)[4], const std::source_location& loc) {
  emu::mma<emu::InType::kBf16>(a, b, c, d, "mma.m16n8k16.bf16", loc);
}
void mma_m16n8k16_f16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                      const float (&c)[4], const std::source_location& loc) {
  emu::mma<emu::InType::kF16>(a, b, c, d, "mma.m16n8k16.f16", loc);
}
void mma_m16n8k32_s8(int32_t (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                     const int32_t (&c)[4], const std::source_location& loc) {
  emu::mma<emu::InType::kS8>(a, b, c, d, "mma.m16n8k32.s8", loc);
}
void mma_m16n8k32_e4m3(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                       const float (&c)[4], const std::source_location& loc) {
  emu::mma<emu::InType::kE4m3>(a, b, c, d, "mma.m16n8k32.e4m3", loc);
}

}  // namespace simt
