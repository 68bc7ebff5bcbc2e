#include "exec/device/stream_device.h"

#include <omp.h>
#include <sys/mman.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <chrono>
#include <cstdlib>
#include <cerrno>
#include <cstring>

#include "ferry/error.h"
#include "ferry/exec/trace.h"

namespace ferry {

const char* stream_name(StreamKind s) {
  switch (s) {
    case StreamKind::Compute: return "compute";
    case StreamKind::H2D: return "h2d";
    case StreamKind::D2H: return "d2h";
    case StreamKind::Host: return "host";
  }
  return "?";
}

const char* task_kind_name(TaskKind k) {
  static const char* const kNames[kTaskKindCount] = {"embed",       "pre-attention", "attention",  "post-attention",
                                                     "experts",     "lm-head",       "prefill",    "load-hidden",
                                                     "offload-qkv", "expert-page",   "logits",     "upload",
                                                     "ssd-read"};
  return kNames[static_cast<int>(k)];
}

}  // namespace ferry

namespace ferry::exec {

namespace {

bool is_sim_name(const std::string& name) {  // a sim device is named by its target
  const std::optional<DeviceTarget> d = parse_device_target(name);
  return d && d->kind == DeviceKind::Sim;
}
constexpr size_t kAlign = kDeviceAlign;
size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
std::string mib(size_t bytes) { return std::to_string(bytes) + " bytes (" + std::to_string(bytes >> 20) + " MiB)"; }
}  // namespace

StreamDevice::StreamDevice(DeviceInfo info, bool guard_device_memory)
    : info_(std::move(info)), guard_(guard_device_memory) {
  FERRY_ASSERT_MSG(!guard_ || !info_.asynchronous, "the device-memory guard needs the synchronous device");
  event_done_ = std::make_unique<std::atomic<uint64_t>[]>(kMaxEvents);
  event_recorded_.reserve(kMaxEvents);
  buffer_data_.reserve(1024);
  for (Queue& q : queues_) q.ring.resize(info_.asynchronous ? kQueueDepth : 0);
  if (info_.asynchronous)
    for (int s = 0; s < kStreamCount; ++s) workers_.emplace_back([this, s] { worker(s); });
}

StreamDevice::~StreamDevice() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  for (Queue& q : queues_) q.work.notify_all();
  done_.notify_all();
  for (std::thread& t : workers_) t.join();
  if (arena_) munmap(arena_, arena_size_);
}

void StreamDevice::charge(const std::string& name, size_t bytes) {
  const size_t free = info_.capacity_bytes - used_;
  if (bytes > free)
    throw Error("device " + info_.name + ": buffer '" + name + "' of " + mib(bytes) + " does not fit: " + mib(free) +
                " free of " + mib(info_.capacity_bytes) +
                "; lower the batch size or the pinned experts in the policy, or use a larger device" +
                (is_sim_name(info_.name) ? " (raise or drop scale= on the sim target)" : ""));
  used_ += bytes;
}

BufferId StreamDevice::alloc(const std::string& name, size_t bytes) {
  const size_t n = align_up(std::max<size_t>(bytes, 1));
  charge(name, n);
  if (!arena_) {
    arena_size_ = align_up(info_.capacity_bytes);
    arena_ = mmap(nullptr, arena_size_, guard_ ? PROT_NONE : PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (arena_ == MAP_FAILED) {
      arena_ = nullptr;
      used_ -= n;
      throw Error("device " + info_.name + ": cannot reserve an arena of " + mib(arena_size_));
    }
  }
  void* p = static_cast<std::byte*>(arena_) + arena_top_;
  arena_top_ += n;
  buffer_data_.push_back(p);
  return BufferId{checker_.add_buffer(name, bytes)};
}

void StreamDevice::upload(BufferId dst, size_t offset, const void* src, size_t bytes) {
  FERRY_ASSERT(offset + bytes <= size(dst));
  const DeviceAccess open(*this, true);
  if (bytes) std::memcpy(static_cast<std::byte*>(data(dst)) + offset, src, bytes);
}

void StreamDevice::set_device_access(bool on) {
  if (guard_ && arena_)
    FERRY_ASSERT_MSG(mprotect(arena_, arena_size_, on ? PROT_READ | PROT_WRITE : PROT_NONE) == 0,
                     "mprotect of the guarded device arena failed");
}

BufferId StreamDevice::alloc_host(const std::string& name, size_t bytes) {
  void* p = std::aligned_alloc(kAlign, align_up(std::max<size_t>(bytes, 1)));
  if (!p) throw Error("cannot allocate host buffer '" + name + "' of " + mib(bytes));
  host_buffers_.push_back(std::unique_ptr<void, FreeHost>(p));
  buffer_data_.push_back(host_buffers_.back().get());
  return BufferId{checker_.add_buffer(name, bytes)};
}

void StreamDevice::FreeHost::operator()(void* p) const { std::free(p); }

void* StreamDevice::data(BufferId b) {
  FERRY_ASSERT(b.index >= 0 && b.index < static_cast<int>(buffer_data_.size()));
  return buffer_data_[b.index];
}
size_t StreamDevice::size(BufferId b) const { return checker_.buffer_bytes(b.index); }
const std::string& StreamDevice::name(BufferId b) const { return checker_.buffer_name(b.index); }

void StreamDevice::launch(StreamKind stream, TaskTag tag, std::span<const BufferAccess> access, Task fn) {
  checker_.on_task(stream, tag, access);
  Op op;
  op.type = Op::Run;
  op.tag = tag;
  op.fn = std::move(fn);
  enqueue(stream, std::move(op));
}

void StreamDevice::copy(StreamKind stream, TaskTag tag, BufferId dst, BufferId src,
                        std::span<const CopySegment> segments) {
  FERRY_ASSERT(stream != StreamKind::Host);  // Compute: small relays ordered with the compute work
  FERRY_ASSERT(segments.size() <= kMaxCopySegments);
  std::array<BufferAccess, 2> access;
  int n = 0;
  if (src.valid()) access[n++] = {src, Access::Read};
  if (dst.valid()) access[n++] = {dst, Access::Write};
  checker_.on_task(stream, tag, std::span<const BufferAccess>(access.data(), n));
  Op op;
  op.type = Op::Copy;
  op.tag = tag;
  for (const CopySegment& s : segments) op.segments[op.n_segment++] = s;
  enqueue(stream, std::move(op));
}

EventId StreamDevice::create_event() {
  FERRY_ASSERT(event_recorded_.size() < kMaxEvents);
  event_recorded_.push_back(0);
  event_done_[event_recorded_.size() - 1] = 0;
  return EventId{checker_.add_event()};
}

void StreamDevice::record(EventId e, StreamKind stream) {
  checker_.on_record(e.index, stream);
  Op op;
  op.type = Op::Record;
  op.event = e.index;
  op.generation = ++event_recorded_[e.index];
  enqueue(stream, std::move(op));
}

void StreamDevice::wait(StreamKind stream, EventId e) {
  checker_.on_wait(stream, e.index);
  Op op;
  op.type = Op::Wait;
  op.event = e.index;
  op.generation = event_recorded_[e.index];
  enqueue(stream, std::move(op));
}

void StreamDevice::synchronize(EventId e) {
  checker_.on_host_sync(e.index);
  if (info_.asynchronous) {
    const uint64_t gen = event_recorded_[e.index];
    std::unique_lock lock(mutex_);
    wait_done(lock, [&] { return event_done_[e.index].load() >= gen || worker_error_; });
  }
  rethrow_worker_error();
}

void StreamDevice::synchronize() {
  checker_.on_host_sync_all();
  if (info_.asynchronous) {
    std::unique_lock lock(mutex_);
    wait_done(lock, [&] {
      for (Queue& q : queues_)
        if (q.done.load() < q.enqueued) return false;
      return true;
    });
  }
  rethrow_worker_error();
}

template <class Pred>
void StreamDevice::wait_done(std::unique_lock<std::mutex>& lock, Pred pred) {
  ++done_waiters_;
  done_.wait(lock, pred);
  --done_waiters_;
}

void StreamDevice::notify_done() {
  if (done_waiters_) done_.notify_all();
}

DeviceCounters StreamDevice::counters() const {
  DeviceCounters c;
  for (int s = 0; s < kStreamCount; ++s) {
    c.busy_seconds[s] = static_cast<double>(queues_[s].busy_ns.load()) * 1e-9;
    c.bytes[s] = queues_[s].bytes.load();
  }
  c.wait_seconds.emplace();
  for (int s = 0; s < kStreamCount; ++s) (*c.wait_seconds)[s] = static_cast<double>(queues_[s].wait_ns.load()) * 1e-9;
  return c;
}

void StreamDevice::rethrow_worker_error() {
  std::exception_ptr e;
  {
    std::lock_guard lock(mutex_);
    std::swap(e, worker_error_);
  }
  if (e) std::rethrow_exception(e);
}

void StreamDevice::enqueue(StreamKind stream, Op&& op) {
  Queue& q = queues_[static_cast<int>(stream)];
  if (!info_.asynchronous) {
    ++q.enqueued;
    execute(stream, op);
    q.done.store(q.enqueued);
    return;
  }
  {
    std::unique_lock lock(mutex_);
    if (q.tail - q.head == q.ring.size()) {
      ++space_waiters_;
      space_.wait(lock, [&] { return q.tail - q.head < q.ring.size(); });
      --space_waiters_;
    }
    q.ring[q.tail % q.ring.size()] = std::move(op);
    ++q.tail;
    ++q.enqueued;
  }
  q.work.notify_one();
}

void StreamDevice::execute(StreamKind stream, Op& op) {
  Queue& q = queues_[static_cast<int>(stream)];
  // Device memory is open to the device's own streams only: a host task or the executor's host code
  // touching it faults when the guard is on.
  const DeviceAccess open(*this, stream != StreamKind::Host);
  const auto t0 = std::chrono::steady_clock::now();
  const double start = trace_ ? trace_->now_us() : 0;
  uint64_t bytes = 0;
  switch (op.type) {
    case Op::Run:
      op.fn(StreamContext{stream, nullptr});
      op.fn.reset();
      break;
    case Op::Copy: {
      for (int i = 0; i < op.n_segment; ++i) {
        const CopySegment& s = op.segments[i];
        if (s.dst != s.src && s.bytes) std::memcpy(s.dst, s.src, s.bytes);
        bytes += s.bytes;
      }
      const double gbps = stream == StreamKind::H2D ? info_.h2d_gbps : info_.d2h_gbps;
      if (gbps > 0)  // the link is busy for bytes / bandwidth, however fast the memcpy was
        std::this_thread::sleep_until(t0 + std::chrono::duration<double>(static_cast<double>(bytes) / (gbps * 1e9)));
      break;
    }
    case Op::Record: {
      {
        std::lock_guard lock(mutex_);
        event_done_[op.event].store(op.generation);
        notify_done();
      }
      return;
    }
    case Op::Wait: {
      if (!info_.asynchronous) return;
      std::unique_lock lock(mutex_);
      wait_done(lock, [&] { return event_done_[op.event].load() >= op.generation || stopping_; });
      q.wait_ns.fetch_add(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                              std::chrono::steady_clock::now() - t0).count()),
                          std::memory_order_relaxed);
      return;
    }
  }
  const auto t1 = std::chrono::steady_clock::now();
  q.busy_ns.fetch_add(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()),
                      std::memory_order_relaxed);
  q.bytes.fetch_add(bytes, std::memory_order_relaxed);
  if (trace_) trace_->add(stream, op.tag, start, trace_->now_us(), bytes);
}

void StreamDevice::worker(int s) {
#ifdef __linux__
  // Copies sleep for bytes / bandwidth: without this the kernel may add its default 50 us of timer
  // slack to every sleep, and the emulated link would run slower than its stated bandwidth.
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
#endif
  // The emulated GPU's streams (compute, copy engines) each get one host thread; only the Host stream
  // (CPU attention) parallelises over the host's cores, as it does on a real machine. Otherwise the
  // device compute's OpenMP team would spin on the cores CPU attention and the copy engines need.
  if (static_cast<StreamKind>(s) != StreamKind::Host) omp_set_num_threads(1);
  Queue& q = queues_[s];
  for (;;) {
    Op op;
    {
      std::unique_lock lock(mutex_);
      q.work.wait(lock, [&] { return q.tail > q.head || stopping_; });
      if (stopping_ && q.tail == q.head) return;
      op = std::move(q.ring[q.head % q.ring.size()]);
      ++q.head;
      if (space_waiters_) space_.notify_all();
    }
    try {
      execute(static_cast<StreamKind>(s), op);
    } catch (...) {
      std::lock_guard lock(mutex_);
      if (!worker_error_) worker_error_ = std::current_exception();
    }
    {
      std::lock_guard lock(mutex_);
      q.done.fetch_add(1);
      notify_done();
    }
  }
}

}  // namespace ferry::exec
