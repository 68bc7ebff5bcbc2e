// CudaDevice: the Device (ferry/device.h) on an NVIDIA GPU: `cuda[:N][,capacity=SIZE][,h2d=GBps][,d2h=GBps]`.
//
// Memory. One arena, cudaMalloc'ed once at the first alloc with the device's capacity (the GPU's free
// memory at creation minus kReserveBytes for the CUDA context and cuBLAS, or capacity= when smaller), and
// carved into 256-byte aligned named buffers; nothing is freed before the device is. alloc_host is
// pinned memory (cudaHostAlloc), tracked so copies can check that their host side is pinned.
//
// Streams. Compute, H2D and D2H are CUDA streams created non-blocking (never the legacy default stream).
// A Compute (or copy-stream) task runs at once on the calling thread with StreamContext::native = its
// cudaStream_t and enqueues kernels there; it returns before they run. The Host stream is one worker
// thread running host tasks in FIFO order.
//
// Copies. copy() is one cudaMemcpyAsync per segment on the copy stream (or on Compute, for the small
// relays device.h allows there; their direction is that of their source); the host side of every segment
// must lie in an alloc_host buffer and the device side in the arena (ferry::Error naming the buffer
// otherwise: there are no pageable copies). h2d= / d2h= cap a link: a host callback after the copy holds
// the stream until bytes / cap has passed since the copy began (cudaLaunchHostFunc; it only sleeps).
//
// Events. Each EventId owns a small ring of cudaEvent_t (cudaEventDisableTiming), one per generation of
// record(), so a Host-stream wait always waits for the record it was enqueued after, never a later one.
//   record on a device stream   cudaEventRecord into the generation's slot
//   record on the Host stream   the worker marks the generation done when it reaches the record
//   device stream waits         on a device record: cudaStreamWaitEvent (no host involvement);
//                               on a Host record: the *enqueuing thread* first waits on the host until
//                               the worker has reached that record, then returns (the stream itself
//                               needs no wait: everything the host did is done). This blocks the caller,
//                               so the executor should order host work before device work it feeds with
//                               as little slack as possible.
//   Host stream waits           on a device record: the worker blocks in cudaEventSynchronize on the
//                               generation's slot; on a Host record: FIFO order already holds.
// The ordering contract is checked by the same OrderChecker as the host devices.
//
// Counters and trace. Device-stream busy time is measured with timing events recorded around each task
// and copy (a ring per stream, read back lazily; when the GPU falls more than kTimingRing tasks behind,
// the enqueue waits for the oldest one: backpressure, not a synchronize of the stream). Host tasks are
// timed on the worker. With a trace set, device tasks are added with host timestamps derived from the
// timing events and one reference event synchronised when the trace was set (microsecond accuracy);
// they appear once the events have completed (at the latest at synchronize()).
#pragma once
#include <cuda_runtime.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "exec/device/order_checker.h"
#include "ferry/device.h"

namespace ferry::cuda {

class CudaOps;

inline constexpr size_t kReserveBytes = size_t{512} << 20;  // CUDA context, cuBLAS, kernels

struct CudaTarget {
  int ordinal = 0;
  size_t capacity = 0;   // 0: the free memory at creation minus kReserveBytes
  double h2d_gbps = 0;   // 0: no cap
  double d2h_gbps = 0;
};
// Parses `cuda[:N][,capacity=SIZE][,h2d=GBps][,d2h=GBps]`; throws ferry::Error naming the target.
CudaTarget parse_cuda_target(const std::string& target);
// A size: bytes, or a number with a unit: 24GB / 1.5TB / 512MB / 64KB (powers of 1000), 24GiB / 512MiB /
// 64KiB (powers of 1024); "1.5e9" is bytes. Throws ferry::Error for anything else.
size_t parse_size(const std::string& text);

class CudaDevice final : public Device {
 public:
  // Throws ferry::Error (one line, naming the call and its result) without a usable GPU, for a bad target,
  // or when capacity= exceeds what the GPU has free.
  explicit CudaDevice(const std::string& target);
  ~CudaDevice() override;
  CudaDevice(const CudaDevice&) = delete;
  CudaDevice& operator=(const CudaDevice&) = delete;

  const DeviceInfo& info() const override { return info_; }
  BufferId alloc(const std::string& name, size_t bytes) override;
  BufferId alloc_host(const std::string& name, size_t bytes) override;
  void* data(BufferId b) override;
  void upload(BufferId dst, size_t offset, const void* src, size_t bytes) override;
  size_t size(BufferId b) const override;
  const std::string& name(BufferId b) const override;
  size_t used_bytes() const override { return used_; }

  void launch(StreamKind stream, TaskTag tag, std::span<const BufferAccess> access, Task fn) override;
  void copy(StreamKind stream, TaskTag tag, BufferId dst, BufferId src, std::span<const CopySegment> segments) override;
  using Device::copy;
  EventId create_event() override;
  void record(EventId e, StreamKind stream) override;
  void wait(StreamKind stream, EventId e) override;
  void synchronize(EventId e) override;
  void synchronize() override;
  LayerOps& ops() override;
  void set_trace(Trace* trace) override;
  DeviceCounters counters() const override;

  int ordinal() const { return ordinal_; }
  cudaStream_t stream(StreamKind s) const;
  // Makes this device current on the calling thread (every entry point does).
  void make_current() const;

 private:
  static constexpr int kDeviceStreams = 3;  // Compute, H2D, D2H
  static constexpr int kMaxEvents = 4096;
  static constexpr int kEventRing = 8;
  static constexpr int kTimingRing = 1024;
  static constexpr int kThrottleRing = 256;
  static constexpr size_t kHostQueueDepth = 512;
  static constexpr size_t kAlign = kDeviceAlign;

  struct Buffer {
    void* data = nullptr;
    size_t bytes = 0;
    bool host = false;
  };
  struct EventState {
    std::array<cudaEvent_t, kEventRing> ev{};
    std::array<std::atomic<int>, kEventRing> host_waiters{};  // Host-stream waits enqueued on ev[i], not yet done
    uint64_t generation = 0;                                  // records so far
    StreamKind last = StreamKind::Compute;                    // stream of the latest record
  };
  struct HostOp {
    enum Type : uint8_t { Run, Record, WaitHost, WaitDevice } type = Run;
    TaskTag tag;
    Task fn;
    int event = -1;
    uint64_t generation = 0;
    cudaEvent_t device_event = nullptr;
    std::atomic<int>* waiters = nullptr;
  };
  struct Timing {
    cudaEvent_t start = nullptr, end = nullptr;
    int stream = 0;  // index into streams_
    TaskTag tag;
    uint64_t bytes = 0;
    bool pending = false;
  };
  struct ThrottleSlot {
    double gbps = 0;
    uint64_t bytes = 0;
    std::chrono::steady_clock::time_point start;
    std::atomic<bool> busy{false};
  };

  static int device_index(StreamKind s);
  void charge(const std::string& name, size_t bytes);
  bool copies_to_device(StreamKind stream, BufferId src, std::span<const CopySegment> segments) const;
  void check_copy(StreamKind stream, bool h2d, TaskTag tag, BufferId dst, BufferId src, const CopySegment& s,
                  int i) const;
  bool in_pinned(const void* p, size_t bytes) const;
  bool in_arena(const void* p, size_t bytes) const;
  const char* buffer_label(BufferId b) const;

  // timing
  Timing& begin_timing(int s, TaskTag tag, uint64_t bytes);
  void end_timing(int s, Timing& t);
  void harvest(Timing& t, bool block) const;  // accounts a pending timing if it is complete (or waits)
  void harvest_all(bool block) const;

  // host stream
  void enqueue_host(HostOp&& op);
  void host_worker();
  template <class Pred>
  void wait_done(std::unique_lock<std::mutex>& lock, Pred pred);
  void wait_host_generation(int event, uint64_t gen);
  void rethrow_worker_error();

  static void CUDART_CB throttle_begin(void* slot);
  static void CUDART_CB throttle_end(void* slot);

  DeviceInfo info_;
  int ordinal_ = 0;
  int compute_major_ = 0;
  exec::OrderChecker checker_;
  std::array<cudaStream_t, kDeviceStreams> streams_{};

  void* arena_ = nullptr;
  size_t arena_size_ = 0, arena_top_ = 0, used_ = 0;
  std::vector<Buffer> buffers_;
  std::vector<void*> pinned_;

  std::vector<std::unique_ptr<EventState>> events_;
  std::unique_ptr<std::atomic<uint64_t>[]> host_done_;  // [kMaxEvents]: generation reached by Host records

  mutable std::array<std::vector<Timing>, kDeviceStreams> timing_;
  std::array<size_t, kDeviceStreams> timing_next_{};
  mutable std::array<double, kDeviceStreams> busy_seconds_{};
  std::array<uint64_t, kDeviceStreams> bytes_{};
  std::array<std::unique_ptr<ThrottleSlot[]>, 2> throttle_;  // H2D, D2H
  std::array<size_t, 2> throttle_next_{};

  Trace* trace_ = nullptr;
  std::atomic<Trace*> host_trace_{nullptr};
  cudaEvent_t trace_ref_ = nullptr;  // timing event synchronised at set_trace
  double trace_ref_us_ = 0;

  // Host stream
  std::vector<HostOp> host_ring_;
  size_t host_head_ = 0, host_tail_ = 0;
  uint64_t host_enqueued_ = 0;
  std::atomic<uint64_t> host_completed_{0};
  std::atomic<uint64_t> host_busy_ns_{0};
  std::mutex mutex_;
  std::condition_variable host_work_, host_space_, host_done_cv_;
  bool stopping_ = false;
  std::exception_ptr worker_error_;
  std::thread worker_;

  std::unique_ptr<CudaOps> ops_;
};

}  // namespace ferry::cuda
