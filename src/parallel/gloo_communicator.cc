// The Communicator on Gloo (Debian's libgloo-dev, 0.5.0 of 2022-05): TCP transport, rendezvous
// through a FileStore, the tag-based collectives whose options carry a per-op timeout.
#include <algorithm>
#include <csignal>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "gloo/allgather.h"
#include "gloo/allreduce.h"
#include "gloo/alltoall.h"
#include "gloo/alltoallv.h"
#include "gloo/barrier.h"
#include "gloo/broadcast.h"
#include "gloo/common/error.h"
#include "gloo/math.h"
#include "gloo/rendezvous/context.h"
#include "gloo/rendezvous/file_store.h"
#include "gloo/rendezvous/prefix_store.h"
#include "gloo/transport/tcp/device.h"
#include "gloo/types.h"
#include "parallel/communicator.h"

namespace moeserve {
namespace {

// Slots of point-to-point messages: Gloo's collectives use prefixes 0x01..0x08 (gloo/types.h).
constexpr uint8_t kPointToPointSlotPrefix = 0x40;

// Gloo's connectFullMesh waits on the store with the store's default 30 s; this store applies
// the group's timeout to every wait instead, so a rank that never arrives fails in time.
class TimeoutStore final : public gloo::rendezvous::Store {
 public:
  TimeoutStore(gloo::rendezvous::Store& inner, std::chrono::milliseconds timeout)
      : inner_(inner), timeout_(timeout) {}
  void set(const std::string& key, const std::vector<char>& data) override {
    inner_.set(key, data);
  }
  std::vector<char> get(const std::string& key) override { return inner_.get(key); }
  void wait(const std::vector<std::string>& keys) override { inner_.wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override {
    inner_.wait(keys, std::min(timeout, timeout_));
  }

 private:
  gloo::rendezvous::Store& inner_;
  const std::chrono::milliseconds timeout_;
};

class GlooCommunicator final : public Communicator {
 public:
  GlooCommunicator(std::shared_ptr<gloo::Context> context, std::chrono::milliseconds timeout)
      : context_(std::move(context)), timeout_(timeout) {}

  int rank() const override { return context_->rank; }
  int world_size() const override { return context_->size; }

 private:
  // Runs one Gloo op, turning its exceptions into a Status that names the op. The first
  // failure is kept: the group is then out of step, so every later op returns it.
  template <typename F>
  absl::Status run(const char* op, F&& body) {
    if (!failed_.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat(op, ": the group failed earlier: ", failed_.message()));
    }
    const std::string where = absl::StrCat(op, " on rank ", rank(), " of ", world_size());
    try {
      body();
      return absl::OkStatus();
    } catch (const gloo::IoException& e) {
      failed_ = absl::UnavailableError(absl::StrCat(where, ": a peer is gone or silent for ",
                                                    timeout_.count(), " ms: ", e.what()));
    } catch (const std::exception& e) {
      failed_ = absl::InternalError(absl::StrCat(where, ": ", e.what()));
    }
    return failed_;
  }

  // Collectives are called in the same order on every rank, so a counter gives each one the
  // same tag everywhere and successive ops never share one.
  uint32_t next_tag() { return next_tag_++; }

  absl::Status all_reduce_sum_impl(std::span<float> data) override {
    if (data.empty()) return absl::OkStatus();  // equal on every rank, so all skip it
    return run("all_reduce_sum", [&] {
      gloo::AllreduceOptions opts(context_);
      opts.setOutput(data.data(), data.size());
      opts.setReduceFunction(
          static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<float>));
      opts.setTag(next_tag());
      gloo::allreduce(opts);
    });
  }

  absl::Status all_gather_impl(std::span<const float> in, std::span<float> out) override {
    if (in.empty()) return absl::OkStatus();
    return run("all_gather", [&] {
      gloo::AllgatherOptions opts(context_);
      // Gloo only reads its input buffers; its API takes them mutable.
      opts.setInput(const_cast<float*>(in.data()), in.size());
      opts.setOutput(out.data(), out.size());
      opts.setTag(next_tag());
      gloo::allgather(opts);
    });
  }

  // Gloo 0.5's tag-based API has no reduce-scatter (only the older ReduceScatterHalvingDoubling
  // algorithm object, which has no per-op timeout), so this is an all-reduce of the whole
  // input followed by taking this rank's slice: world_size() times the traffic of a true
  // reduce-scatter, the same result.
  absl::Status reduce_scatter_sum_impl(std::span<const float> in, std::span<float> out) override {
    scratch_.assign(in.begin(), in.end());
    RETURN_IF_ERROR(all_reduce_sum_impl(scratch_));
    const auto slice = scratch_.begin() + static_cast<ptrdiff_t>(out.size()) * rank();
    std::copy(slice, slice + static_cast<ptrdiff_t>(out.size()), out.begin());
    return absl::OkStatus();
  }

  absl::Status exchange_counts_impl(std::span<const int32_t> send_counts,
                                    std::span<int32_t> recv_counts) override {
    return run("exchange_counts", [&] {
      gloo::AlltoallOptions opts(context_);
      opts.setInput(const_cast<int32_t*>(send_counts.data()), send_counts.size());
      opts.setOutput(recv_counts.data(), recv_counts.size());
      opts.setTag(next_tag());
      gloo::alltoall(opts);
    });
  }

  absl::Status all_to_all_impl(std::span<const float> send, std::span<const int32_t> send_counts,
                               std::span<float> recv,
                               std::span<const int32_t> recv_counts) override {
    return run("all_to_all", [&] {
      // An empty span may have no storage; Gloo needs a pointer even for zero bytes.
      float empty = 0.0f;
      gloo::AlltoallvOptions opts(context_);
      opts.setInput(send.empty() ? &empty : const_cast<float*>(send.data()),
                    std::vector<int64_t>(send_counts.begin(), send_counts.end()));
      opts.setOutput(recv.empty() ? &empty : recv.data(),
                     std::vector<int64_t>(recv_counts.begin(), recv_counts.end()));
      opts.setTag(next_tag());
      gloo::alltoallv(opts);
    });
  }

  absl::Status broadcast_impl(std::span<float> data, int root) override {
    if (data.empty()) return absl::OkStatus();
    return run("broadcast", [&] {
      gloo::BroadcastOptions opts(context_);
      opts.setOutput(data.data(), data.size());  // root's output is also its input
      opts.setRoot(root);
      opts.setTag(next_tag());
      gloo::broadcast(opts);
    });
  }

  absl::Status send_impl(std::span<const float> data, int peer, uint32_t tag) override {
    return run("send", [&] {
      float empty = 0.0f;
      auto buffer = context_->createUnboundBuffer(
          data.empty() ? &empty : const_cast<float*>(data.data()), data.size_bytes());
      buffer->send(peer, gloo::Slot::build(kPointToPointSlotPrefix, tag));
      if (!buffer->waitSend(timeout_)) GLOO_THROW_IO_EXCEPTION("send aborted");
    });
  }

  absl::Status recv_impl(std::span<float> data, int peer, uint32_t tag) override {
    return run("recv", [&] {
      float empty = 0.0f;
      auto buffer =
          context_->createUnboundBuffer(data.empty() ? &empty : data.data(), data.size_bytes());
      buffer->recv(peer, gloo::Slot::build(kPointToPointSlotPrefix, tag));
      if (!buffer->waitRecv(timeout_)) GLOO_THROW_IO_EXCEPTION("recv aborted");
    });
  }

  absl::Status barrier_impl() override {
    return run("barrier", [&] {
      gloo::BarrierOptions opts(context_);
      opts.setTag(next_tag());
      gloo::barrier(opts);
    });
  }

  std::shared_ptr<gloo::Context> context_;
  const std::chrono::milliseconds timeout_;
  uint32_t next_tag_ = 0;
  absl::Status failed_;
  std::vector<float> scratch_;  // reduce_scatter_sum's whole reduced input, reused
};

absl::Status check_options(const GlooOptions& o) {
  if (o.world_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("gloo: world_size ", o.world_size, " < 1"));
  }
  if (o.rank < 0 || o.rank >= o.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("gloo: rank ", o.rank, " is outside [0, ", o.world_size, ")"));
  }
  std::error_code ec;
  if (!std::filesystem::is_directory(o.store_dir, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat("gloo: store_dir '", o.store_dir, "' is not a directory"));
  }
  if (o.prefix.empty()) return absl::InvalidArgumentError("gloo: prefix is empty");
  if (o.host.empty()) return absl::InvalidArgumentError("gloo: host is empty");
  if (o.timeout.count() <= 0) return absl::InvalidArgumentError("gloo: timeout must be > 0");
  return absl::OkStatus();
}

// Gloo's TCP transport writes to its sockets without MSG_NOSIGNAL, so a write to a dead
// peer raises SIGPIPE, which by default kills this process instead of failing the op. Ignore
// it, as `moeserve serve` does, unless someone installed a handler of their own.
void ignore_sigpipe() {
  struct sigaction current {};
  if (sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
    signal(SIGPIPE, SIG_IGN);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> create_gloo_communicator(const GlooOptions& options) {
  RETURN_IF_ERROR(check_options(options));
  ignore_sigpipe();
  const std::string where =
      absl::StrCat("gloo rendezvous of rank ", options.rank, " of ", options.world_size, " ('",
                   options.prefix, "' in ", options.store_dir, ")");
  try {
    gloo::rendezvous::FileStore file_store(options.store_dir);
    gloo::rendezvous::PrefixStore prefix_store(options.prefix, file_store);
    TimeoutStore store(prefix_store, options.timeout);
    gloo::transport::tcp::attr attr;
    attr.hostname = options.host;
    auto device = gloo::transport::tcp::CreateDevice(attr);
    auto context = std::make_shared<gloo::rendezvous::Context>(options.rank, options.world_size);
    context->setTimeout(options.timeout);
    context->connectFullMesh(store, device);
    return std::make_unique<GlooCommunicator>(std::move(context), options.timeout);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat(where, " failed: ", e.what()));
  }
}

}  // namespace moeserve
