#include "parallel/communicator.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace moeserve {
namespace {

absl::Status check_rank(const Communicator& comm, const char* op, const char* what, int r) {
  if (r < 0 || r >= comm.world_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": ", what, " ", r, " is not a rank of a group of ", comm.world_size()));
  }
  return absl::OkStatus();
}

// counts holds world_size entries, each >= 0, summing to `total` (when total >= 0).
absl::Status check_counts(const Communicator& comm, const char* op, const char* what,
                          std::span<const int32_t> counts, int64_t total) {
  if (counts.size() != static_cast<size_t>(comm.world_size())) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", what, " has ", counts.size(),
                                                   " entries for ", comm.world_size(), " ranks"));
  }
  if (std::any_of(counts.begin(), counts.end(), [](int32_t c) { return c < 0; })) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", what, " has a negative count"));
  }
  const int64_t sum = std::accumulate(counts.begin(), counts.end(), int64_t{0});
  if (total >= 0 && sum != total) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": ", what, " sum to ", sum, " but the buffer holds ", total));
  }
  return absl::OkStatus();
}

class SingleRankCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }

 private:
  absl::Status all_reduce_sum_impl(std::span<float>) override { return absl::OkStatus(); }
  absl::Status all_gather_impl(std::span<const float> in, std::span<float> out) override {
    std::copy(in.begin(), in.end(), out.begin());
    return absl::OkStatus();
  }
  absl::Status reduce_scatter_sum_impl(std::span<const float> in, std::span<float> out) override {
    std::copy(in.begin(), in.end(), out.begin());
    return absl::OkStatus();
  }
  absl::Status exchange_counts_impl(std::span<const int32_t> send_counts,
                                    std::span<int32_t> recv_counts) override {
    recv_counts[0] = send_counts[0];
    return absl::OkStatus();
  }
  absl::Status all_to_all_impl(std::span<const float> send, std::span<const int32_t>,
                               std::span<float> recv, std::span<const int32_t>) override {
    if (send.size() != recv.size()) {
      return absl::InvalidArgumentError(absl::StrCat("all_to_all: rank 0 sends ", send.size(),
                                                     " elements to itself but receives ",
                                                     recv.size()));
    }
    std::copy(send.begin(), send.end(), recv.begin());
    return absl::OkStatus();
  }
  absl::Status broadcast_impl(std::span<float>, int) override { return absl::OkStatus(); }
  // Unreachable: check_rank refuses every peer, since a peer must differ from rank 0.
  absl::Status send_impl(std::span<const float>, int, uint32_t) override {
    return absl::InternalError("send: a single-rank group has no peer");
  }
  absl::Status recv_impl(std::span<float>, int, uint32_t) override {
    return absl::InternalError("recv: a single-rank group has no peer");
  }
  absl::Status barrier_impl() override { return absl::OkStatus(); }
};

}  // namespace

absl::Status Communicator::all_reduce_sum(std::span<float> data) {
  return all_reduce_sum_impl(data);
}

absl::Status Communicator::all_gather(std::span<const float> in, std::span<float> out) {
  if (out.size() != in.size() * static_cast<size_t>(world_size())) {
    return absl::InvalidArgumentError(absl::StrCat("all_gather: out holds ", out.size(),
                                                   " elements, not ", in.size(), " x ",
                                                   world_size(), " ranks"));
  }
  return all_gather_impl(in, out);
}

absl::Status Communicator::reduce_scatter_sum(std::span<const float> in, std::span<float> out) {
  if (in.size() != out.size() * static_cast<size_t>(world_size())) {
    return absl::InvalidArgumentError(absl::StrCat("reduce_scatter_sum: in holds ", in.size(),
                                                   " elements, not ", out.size(), " x ",
                                                   world_size(), " ranks"));
  }
  return reduce_scatter_sum_impl(in, out);
}

absl::Status Communicator::exchange_counts(std::span<const int32_t> send_counts,
                                           std::span<int32_t> recv_counts) {
  RETURN_IF_ERROR(check_counts(*this, "exchange_counts", "send_counts", send_counts, -1));
  if (recv_counts.size() != static_cast<size_t>(world_size())) {
    return absl::InvalidArgumentError(absl::StrCat("exchange_counts: recv_counts has ",
                                                   recv_counts.size(), " entries for ",
                                                   world_size(), " ranks"));
  }
  return exchange_counts_impl(send_counts, recv_counts);
}

absl::Status Communicator::all_to_all(std::span<const float> send,
                                      std::span<const int32_t> send_counts, std::span<float> recv,
                                      std::span<const int32_t> recv_counts) {
  RETURN_IF_ERROR(check_counts(*this, "all_to_all", "send_counts", send_counts,
                               static_cast<int64_t>(send.size())));
  RETURN_IF_ERROR(check_counts(*this, "all_to_all", "recv_counts", recv_counts,
                               static_cast<int64_t>(recv.size())));
  return all_to_all_impl(send, send_counts, recv, recv_counts);
}

absl::Status Communicator::broadcast(std::span<float> data, int root) {
  RETURN_IF_ERROR(check_rank(*this, "broadcast", "root", root));
  return broadcast_impl(data, root);
}

absl::Status Communicator::send(std::span<const float> data, int peer, uint32_t tag) {
  RETURN_IF_ERROR(check_rank(*this, "send", "peer", peer));
  if (peer == rank()) return absl::InvalidArgumentError("send: a rank cannot send to itself");
  return send_impl(data, peer, tag);
}

absl::Status Communicator::recv(std::span<float> data, int peer, uint32_t tag) {
  RETURN_IF_ERROR(check_rank(*this, "recv", "peer", peer));
  if (peer == rank()) return absl::InvalidArgumentError("recv: a rank cannot receive from itself");
  return recv_impl(data, peer, tag);
}

absl::Status Communicator::barrier() { return barrier_impl(); }

std::unique_ptr<Communicator> create_single_rank_communicator() {
  return std::make_unique<SingleRankCommunicator>();
}

}  // namespace moeserve
