// A kernel test run once per schedule: param 0 is the emulator's deterministic
// schedule, other params random schedules seeded by the param; racecheck on.
#pragma once

#include <cstdint>

#include "kernels/simt/emu/grid.h"
#include "kernels/simt/launch_config.h"
#include <gtest/gtest.h>

namespace moeserve {

class ScheduledEmuTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    simt::EmuOptions o;
    o.racecheck = true;
    o.schedule = GetParam() == 0 ? simt::Schedule::kDeterministic : simt::Schedule::kRandom;
    o.seed = static_cast<uint64_t>(GetParam());
    simt::emu::set_default_options(o);
  }
  void TearDown() override { simt::emu::set_default_options(simt::EmuOptions{}); }
};

}  // namespace moeserve
