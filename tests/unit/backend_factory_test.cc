// create_backend: names, and `auto` only ever returning a backend that can run a model
// (on a machine without a GPU, or while the CUDA backend is incomplete, the CPU backend).
#include "backend/backend.h"
#include <gtest/gtest.h>

namespace moeserve {
namespace {

TEST(BackendFactory, CpuByName) {
  auto b = create_backend("cpu", 1);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*b)->name(), "cpu");
  EXPECT_TRUE((*b)->runs_models());
}

TEST(BackendFactory, AutoReturnsABackendThatRunsModels) {
  auto b = create_backend("auto", 1);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE((*b)->runs_models()) << (*b)->name();
}

TEST(BackendFactory, UnknownNameIsAnError) {
  auto b = create_backend("tpu", 1);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(b.status().message().find("tpu"), std::string_view::npos) << b.status();
}

}  // namespace
}  // namespace moeserve
