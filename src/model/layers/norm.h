// RMSNorm, plain and fused with the residual add that precedes it.
#pragma once

#include "backend/backend.h"

namespace moeserve {

class RmsNorm {
 public:
  RmsNorm() = default;
  RmsNorm(Tensor weight, float eps) : weight_(std::move(weight)), eps_(eps) {}

  bool defined() const { return weight_.defined(); }
  // out = x / rms(x) · weight. x, out: [n, d] (may alias).
  void forward(Backend& be, const Tensor& x, const Tensor& out) const {
    be.rms_norm(x, weight_, eps_, out);
  }
  // residual += x; out = norm(residual): a decoder block's "add, then norm".
  void add_forward(Backend& be, const Tensor& residual, const Tensor& x, const Tensor& out) const {
    be.add_rms_norm(residual, x, weight_, eps_, out);
  }

 private:
  Tensor weight_;  // [d]
  float eps_ = 1e-6f;
};

}  // namespace moeserve
