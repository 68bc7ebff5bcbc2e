// The host-emulated Device behind both `cpu` and `sim:<profile>`. Synchronous mode (cpu) runs each
// task on the calling thread as it is enqueued; asynchronous mode (sim) gives every stream its own
// worker thread and a fixed-size FIFO, and makes copies last bytes / bandwidth of wall time.
//
// Wake-ups are targeted (one condition variable per stream for new work, one for completions that
// only waiters are told about): with four workers and the host on a 2-core machine, waking every
// thread on every state change would cost more link time than the copies themselves.
#pragma once
#include <atomic>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "exec/device/host_ops.h"
#include "exec/device/order_checker.h"
#include "ferry/device.h"

namespace ferry::exec {

class StreamDevice final : public Device {
 public:
  // guard_device_memory (synchronous mode only; for tests): the device arena is mapped PROT_NONE except
  // while a Compute, H2D or D2H task or an upload runs, so host code that dereferences device memory --
  // which would read garbage or crash on a real GPU -- faults here instead.
  explicit StreamDevice(DeviceInfo info, bool guard_device_memory = false);
  ~StreamDevice() override;

  const DeviceInfo& info() const override { return info_; }
  BufferId alloc(const std::string& name, size_t bytes) override;
  void upload(BufferId dst, size_t offset, const void* src, size_t bytes) override;
  LayerOps& ops() override { return ops_; }
  BufferId alloc_host(const std::string& name, size_t bytes) override;
  void* data(BufferId b) override;
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
  void set_trace(Trace* trace) override { trace_ = trace; }
  DeviceCounters counters() const override;

 private:
  struct Op {
    enum Type : uint8_t { Run, Copy, Record, Wait } type = Run;
    TaskTag tag;
    Task fn;
    std::array<CopySegment, kMaxCopySegments> segments;
    int n_segment = 0;
    int event = -1;
    uint64_t generation = 0;
  };
  struct Queue {
    std::vector<Op> ring;
    size_t head = 0, tail = 0;  // pop at head, push at tail; size = tail - head
    uint64_t enqueued = 0;
    std::atomic<uint64_t> done{0};
    std::condition_variable work;  // an op was pushed (the worker waits on it)
    // totals for counters(), written by the stream's worker only
    std::atomic<uint64_t> busy_ns{0}, bytes{0}, wait_ns{0};
  };
  static constexpr size_t kQueueDepth = 512;
  static constexpr int kMaxEvents = 4096;

  void charge(const std::string& name, size_t bytes);
  void set_device_access(bool on);
  struct DeviceAccess {  // opens the guarded arena for its scope (no-op without the guard)
    DeviceAccess(StreamDevice& d, bool open) : dev(open ? &d : nullptr) {
      if (dev) dev->set_device_access(true);
    }
    ~DeviceAccess() {
      if (dev) dev->set_device_access(false);
    }
    StreamDevice* dev;
  };
  void enqueue(StreamKind stream, Op&& op);
  void execute(StreamKind stream, Op& op);
  void worker(int stream);
  void rethrow_worker_error();
  // Blocks (lock held) until pred(); woken by completions (op done, event recorded, worker error).
  template <class Pred>
  void wait_done(std::unique_lock<std::mutex>& lock, Pred pred);
  void notify_done();  // lock held

  DeviceInfo info_;
  bool guard_ = false;
  HostOps ops_;
  OrderChecker checker_;
  // Device arena: one region of the capacity, reserved (not committed) on the first alloc.
  void* arena_ = nullptr;
  size_t arena_size_ = 0;
  size_t arena_top_ = 0;
  size_t used_ = 0;
  std::vector<void*> buffer_data_;
  struct FreeHost {
    void operator()(void* p) const;
  };
  std::vector<std::unique_ptr<void, FreeHost>> host_buffers_;

  std::unique_ptr<std::atomic<uint64_t>[]> event_done_;
  std::vector<uint64_t> event_recorded_;

  Trace* trace_ = nullptr;
  std::array<Queue, kStreamCount> queues_;
  mutable std::mutex mutex_;
  std::condition_variable space_;  // an op was popped (an enqueuer waits on a full queue)
  std::condition_variable done_;   // an op finished, an event completed, a worker failed
  int space_waiters_ = 0, done_waiters_ = 0;
  bool stopping_ = false;
  std::exception_ptr worker_error_;
  std::vector<std::thread> workers_;
};

}  // namespace ferry::exec
