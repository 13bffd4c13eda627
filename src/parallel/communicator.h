// Collective and point-to-point communication between the rank processes of one group.
//
// Every rank of a group calls the same collectives in the same order with matching sizes
// (the contracts below). Buffers are host memory. A call blocks until this rank's part is
// done; no op hangs: a peer that dies or stalls makes the op fail within the group's timeout
// with a Status naming the op. After any failed op the communicator is unusable: every later
// call returns that first error, since the peers no longer agree on which op comes next.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace moeserve {

// The public calls check what one rank can check of their contract (sizes against
// world_size(), ranks in range, counts >= 0 and summing to the buffer sizes) and return
// InvalidArgument before any communication; the implementations do the rest.
class Communicator {
 public:
  virtual ~Communicator() = default;

  // This process's rank in [0, world_size()).
  virtual int rank() const = 0;
  virtual int world_size() const = 0;

  // data[i] = the sum over ranks of data[i]; data.size() equal on every rank.
  absl::Status all_reduce_sum(std::span<float> data);  // [n]

  // out = rank 0's in, then rank 1's, ...; in.size() equal on every rank and
  // out.size() == in.size() * world_size().
  absl::Status all_gather(std::span<const float> in,  // [n]
                          std::span<float> out);      // [world_size, n]

  // out = this rank's slice of the element-wise sum of every rank's in: the sum over ranks of
  // in[rank * n, (rank + 1) * n), with n = out.size() equal on every rank and
  // in.size() == n * world_size().
  absl::Status reduce_scatter_sum(std::span<const float> in,  // [world_size, n]
                                  std::span<float> out);      // [n]

  // The first half of an all-to-all with per-rank counts: send_counts[r] = how many elements
  // this rank will send to rank r; on return recv_counts[r] = how many rank r will send here.
  // Both spans hold world_size() entries; send counts are >= 0.
  absl::Status exchange_counts(std::span<const int32_t> send_counts,  // [world_size]
                               std::span<int32_t> recv_counts);       // [world_size]

  // send holds, in rank order, send_counts[r] elements for each rank r; recv receives, in
  // rank order, recv_counts[r] elements from each rank r. The counts are those of
  // exchange_counts (rank a's send_counts[b] == rank b's recv_counts[a]); send.size() and
  // recv.size() are exactly the sums of their counts: nothing is padded.
  absl::Status all_to_all(std::span<const float> send,            // [sum send_counts]
                          std::span<const int32_t> send_counts,   // [world_size]
                          std::span<float> recv,                  // [sum recv_counts]
                          std::span<const int32_t> recv_counts);  // [world_size]

  // Every rank's data becomes root's data; data.size() equal on every rank.
  absl::Status broadcast(std::span<float> data, int root);  // [n]

  // Point to point: a send to `peer` matches the recv there with the same tag and size.
  // Messages between two ranks with one tag arrive in the order sent. send returns once the
  // data has left this buffer, which may wait until the peer has posted its recv, so order
  // the calls so that they pair up (say, even ranks send first); recv returns once the data
  // has arrived. peer != rank().
  absl::Status send(std::span<const float> data, int peer, uint32_t tag);  // [n]
  absl::Status recv(std::span<float> data, int peer, uint32_t tag);        // [n]

  // Returns once every rank has entered it.
  absl::Status barrier();

 private:
  // Called with arguments that passed the checks above.
  virtual absl::Status all_reduce_sum_impl(std::span<float> data) = 0;
  virtual absl::Status all_gather_impl(std::span<const float> in, std::span<float> out) = 0;
  virtual absl::Status reduce_scatter_sum_impl(std::span<const float> in, std::span<float> out) = 0;
  virtual absl::Status exchange_counts_impl(std::span<const int32_t> send_counts,
                                            std::span<int32_t> recv_counts) = 0;
  virtual absl::Status all_to_all_impl(std::span<const float> send,
                                       std::span<const int32_t> send_counts, std::span<float> recv,
                                       std::span<const int32_t> recv_counts) = 0;
  virtual absl::Status broadcast_impl(std::span<float> data, int root) = 0;
  virtual absl::Status send_impl(std::span<const float> data, int peer, uint32_t tag) = 0;
  virtual absl::Status recv_impl(std::span<float> data, int peer, uint32_t tag) = 0;
  virtual absl::Status barrier_impl() = 0;
};

// The group of one, so single-process code calls the same interface: every collective is a
// copy or nothing, and send/recv, having no peer, fail their checks.
std::unique_ptr<Communicator> create_single_rank_communicator();

struct GlooOptions {
  int rank = 0;        // this process, in [0, world_size)
  int world_size = 1;  // processes in the group
  // Rendezvous: a directory every rank can read and write (Gloo's FileStore), where each
  // rank publishes its address. Must exist.
  std::string store_dir;
  // Names this group inside store_dir, so several groups (or successive runs) share one
  // directory; every rank of a group uses the same prefix, and a prefix is used once.
  std::string prefix;
  // The address the TCP transport binds and advertises (an IP or a host name).
  std::string host = "127.0.0.1";
  // Bounds the rendezvous and every op: a missing or dead peer fails the call after this.
  std::chrono::milliseconds timeout{std::chrono::seconds(30)};
};

// Joins the group: blocks until every rank has connected to every other (full mesh), or
// fails after options.timeout. Sets SIGPIPE to ignored if it had its default action (Gloo
// writes without MSG_NOSIGNAL; a dead peer must fail an op, not kill this process).
absl::StatusOr<std::unique_ptr<Communicator>> create_gloo_communicator(const GlooOptions& options);

}  // namespace moeserve
