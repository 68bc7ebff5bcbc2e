// The CUDA Device (cuda_device.h): arena, pinned staging, streams, events, copies, the Host-stream
// worker, counters and trace.
#include "kernels/cuda_device.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

#include "ferry/error.h"
#include "ferry/exec/layer_ops.h"
#include "ferry/exec/trace.h"
#include "kernels/cuda_check.h"
#include "kernels/cuda_ops.h"

namespace ferry::cuda {

namespace {

std::string mib(size_t bytes) { return std::to_string(bytes) + " bytes (" + std::to_string(bytes >> 20) + " MiB)"; }

size_t align_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

double parse_positive(const std::string& target, const std::string& key, const std::string& value) {
  double v = 0;
  const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  if (ec != std::errc() || end != value.data() + value.size() || !(v > 0) || !std::isfinite(v))
    throw Error("device target '" + target + "': " + key + "=" + value + " is not a positive number");
  return v;
}

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

}  // namespace

size_t parse_size(const std::string& text) {
  struct Unit {
    const char* suffix;
    double scale;
  };
  static const Unit kUnits[] = {{"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0}, {"TiB", 1099511627776.0},
                                {"KB", 1e3},      {"MB", 1e6},         {"GB", 1e9},            {"TB", 1e12},
                                {"B", 1.0}};
  std::string number = text;
  double scale = 1.0;
  for (const Unit& u : kUnits) {
    const size_t n = std::strlen(u.suffix);
    if (text.size() > n && text.compare(text.size() - n, n, u.suffix) == 0) {
      number = text.substr(0, text.size() - n);
      scale = u.scale;
      break;
    }
  }
  double v = 0;
  const auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), v);
  if (number.empty() || ec != std::errc() || end != number.data() + number.size() || !(v > 0) ||
      !std::isfinite(v * scale) || v * scale >= 1.8e19)
    throw Error("'" + text + "' is not a size; write bytes or a number with a unit, e.g. 24GB, 512MiB, 1.5e9");
  return static_cast<size_t>(v * scale);
}

CudaTarget parse_cuda_target(const std::string& target) {
  CudaTarget t;
  if (target.rfind("cuda", 0) != 0) throw Error("'" + target + "' is not a cuda device (cuda[:N][,...])");
  const size_t comma = target.find(',');
  const std::string head = target.substr(0, comma);
  if (head != "cuda") {
    if (head.rfind("cuda:", 0) != 0)
      throw Error("device target '" + target + "': expected cuda[:N][,capacity=SIZE][,h2d=GBps][,d2h=GBps]");
    const std::string n = head.substr(5);
    int v = -1;
    const auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), v);
    if (n.empty() || ec != std::errc() || end != n.data() + n.size() || v < 0)
      throw Error("device target '" + target + "': '" + n + "' is not a GPU index");
    t.ordinal = v;
  }
  size_t pos = comma;
  while (pos != std::string::npos) {
    const size_t next = target.find(',', pos + 1);
    const std::string kv = target.substr(pos + 1, next == std::string::npos ? std::string::npos : next - pos - 1);
    const size_t eq = kv.find('=');
    const std::string key = kv.substr(0, eq), value = eq == std::string::npos ? "" : kv.substr(eq + 1);
    if (key == "capacity") {
      try {
        t.capacity = parse_size(value);
      } catch (const Error& e) {
        throw Error("device target '" + target + "': capacity=" + value + ": " + e.what());
      }
    } else if (key == "h2d") {
      t.h2d_gbps = parse_positive(target, key, value);
    } else if (key == "d2h") {
      t.d2h_gbps = parse_positive(target, key, value);
    } else {
      throw Error("device target '" + target + "': unknown option '" + key + "' (known: capacity, h2d, d2h)");
    }
    pos = next;
  }
  return t;
}

// ---- construction ---------------------------------------------------------------------------------

CudaDevice::CudaDevice(const std::string& target) {
  const CudaTarget t = parse_cuda_target(target);
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    throw Error(std::string("cuda: cudaGetDeviceCount failed: ") + cudaGetErrorString(err) + " (" +
                cudaGetErrorName(err) + "); use --target cpu or sim:<profile>");
  }
  if (count == 0) throw Error("cuda: the CUDA runtime reports no GPU; use --target cpu or sim:<profile>");
  if (t.ordinal >= count)
    throw Error("cuda: GPU " + std::to_string(t.ordinal) + " requested but this machine has " + std::to_string(count) +
                " (cuda:0 .. cuda:" + std::to_string(count - 1) + ")");
  ordinal_ = t.ordinal;
  make_current();
  cudaDeviceProp prop{};
  FERRY_CUDA_CHECK(cudaGetDeviceProperties(&prop, ordinal_));
  compute_major_ = prop.major;
  size_t free_bytes = 0, total_bytes = 0;
  FERRY_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  const size_t usable = free_bytes > kReserveBytes ? free_bytes - kReserveBytes : 0;
  if (t.capacity > usable)
    throw Error("device target '" + target + "': capacity " + mib(t.capacity) + " exceeds the " + mib(usable) +
                " GPU " + std::to_string(ordinal_) + " (" + prop.name + ") has free beyond a reserve of " +
                mib(kReserveBytes) + "; lower capacity=");
  info_.name = "cuda:" + std::to_string(ordinal_) + " (" + prop.name + ")";
  info_.capacity_bytes = t.capacity ? t.capacity : usable;
  info_.h2d_gbps = t.h2d_gbps;
  info_.d2h_gbps = t.d2h_gbps;
  info_.asynchronous = true;
  info_.host_addressable = false;

  for (cudaStream_t& s : streams_) FERRY_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  for (int s = 0; s < kDeviceStreams; ++s) {
    timing_[s].resize(kTimingRing);
    for (Timing& tm : timing_[s]) {
      tm.stream = s;
      FERRY_CUDA_CHECK(cudaEventCreate(&tm.start));
      FERRY_CUDA_CHECK(cudaEventCreate(&tm.end));
    }
  }
  for (auto& ring : throttle_) ring = std::make_unique<ThrottleSlot[]>(kThrottleRing);
  FERRY_CUDA_CHECK(cudaEventCreate(&trace_ref_));
  host_done_ = std::make_unique<std::atomic<uint64_t>[]>(kMaxEvents);
  for (int i = 0; i < kMaxEvents; ++i) host_done_[i] = 0;
  buffers_.reserve(1024);
  events_.reserve(256);
  host_ring_.resize(kHostQueueDepth);
  ops_ = std::make_unique<CudaOps>(*this);
  worker_ = std::thread([this] { host_worker(); });
}

CudaDevice::~CudaDevice() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  host_work_.notify_all();
  if (worker_.joinable()) worker_.join();
  // Teardown never throws: errors (a GPU already in a failed state) are ignored.
  for (cudaStream_t s : streams_)
    if (s) cudaStreamSynchronize(s);
  ops_.reset();
  for (auto& e : events_)
    for (cudaEvent_t ev : e->ev)
      if (ev) cudaEventDestroy(ev);
  for (auto& ring : timing_)
    for (Timing& tm : ring) {
      if (tm.start) cudaEventDestroy(tm.start);
      if (tm.end) cudaEventDestroy(tm.end);
    }
  if (trace_ref_) cudaEventDestroy(trace_ref_);
  for (cudaStream_t s : streams_)
    if (s) cudaStreamDestroy(s);
  if (arena_) cudaFree(arena_);
  for (void* p : pinned_) cudaFreeHost(p);
  cudaGetLastError();
}

void CudaDevice::make_current() const {
  thread_local int current = -1;
  if (current != ordinal_) {
    FERRY_CUDA_CHECK(cudaSetDevice(ordinal_));
    current = ordinal_;
  }
}

int CudaDevice::device_index(StreamKind s) {
  FERRY_ASSERT(s != StreamKind::Host);
  return static_cast<int>(s);  // Compute 0, H2D 1, D2H 2
}

cudaStream_t CudaDevice::stream(StreamKind s) const { return streams_[device_index(s)]; }

LayerOps& CudaDevice::ops() { return *ops_; }

// ---- memory ---------------------------------------------------------------------------------------

void CudaDevice::charge(const std::string& name, size_t bytes) {
  const size_t free = info_.capacity_bytes - used_;
  if (bytes > free)
    throw Error("device " + info_.name + ": buffer '" + name + "' of " + mib(bytes) + " does not fit: " + mib(free) +
                " free of " + mib(info_.capacity_bytes) +
                "; lower the batch size or the pinned experts in the policy, or raise or drop capacity=");
  used_ += bytes;
}

BufferId CudaDevice::alloc(const std::string& name, size_t bytes) {
  make_current();
  const size_t n = align_up(std::max<size_t>(bytes, 1), kAlign);
  charge(name, n);
  if (!arena_) {
    arena_size_ = align_up(info_.capacity_bytes, kAlign);
    const cudaError_t err = cudaMalloc(&arena_, arena_size_);
    if (err != cudaSuccess) {
      cudaGetLastError();
      arena_ = nullptr;
      used_ -= n;
      throw Error("device " + info_.name + ": cudaMalloc of the arena (" + mib(arena_size_) + ") failed: " +
                  cudaGetErrorString(err) + "; lower capacity=");
    }
  }
  buffers_.push_back(Buffer{static_cast<std::byte*>(arena_) + arena_top_, bytes, false});
  arena_top_ += n;
  return BufferId{checker_.add_buffer(name, bytes)};
}

BufferId CudaDevice::alloc_host(const std::string& name, size_t bytes) {
  make_current();
  void* p = nullptr;
  const cudaError_t err = cudaHostAlloc(&p, std::max<size_t>(bytes, 1), cudaHostAllocDefault);
  if (err != cudaSuccess) {
    cudaGetLastError();
    throw Error("device " + info_.name + ": cannot allocate pinned host buffer '" + name + "' of " + mib(bytes) +
                ": cudaHostAlloc: " + cudaGetErrorString(err));
  }
  pinned_.push_back(p);
  buffers_.push_back(Buffer{p, bytes, true});
  return BufferId{checker_.add_buffer(name, bytes)};
}

void* CudaDevice::data(BufferId b) {
  FERRY_ASSERT(b.index >= 0 && b.index < static_cast<int>(buffers_.size()));
  return buffers_[b.index].data;
}
size_t CudaDevice::size(BufferId b) const { return checker_.buffer_bytes(b.index); }
const std::string& CudaDevice::name(BufferId b) const { return checker_.buffer_name(b.index); }

void CudaDevice::upload(BufferId dst, size_t offset, const void* src, size_t bytes) {
  FERRY_ASSERT(dst.index >= 0 && dst.index < static_cast<int>(buffers_.size()));
  const Buffer& b = buffers_[dst.index];
  if (offset > b.bytes || bytes > b.bytes - offset)
    throw Error("device " + info_.name + ": upload of " + std::to_string(bytes) + " bytes at offset " +
                std::to_string(offset) + " overruns buffer '" + name(dst) + "' of " + std::to_string(b.bytes) + " bytes");
  if (bytes == 0) return;
  void* p = static_cast<std::byte*>(b.data) + offset;
  if (b.host) {
    std::memcpy(p, src, bytes);
    return;
  }
  make_current();
  // On the H2D stream and then waited for: a pageable cudaMemcpy may return before its DMA completes.
  const cudaStream_t s = streams_[device_index(StreamKind::H2D)];
  FERRY_CUDA_CHECK(cudaMemcpyAsync(p, src, bytes, cudaMemcpyHostToDevice, s));
  FERRY_CUDA_CHECK(cudaStreamSynchronize(s));
}

bool CudaDevice::in_pinned(const void* p, size_t bytes) const {
  const auto* q = static_cast<const std::byte*>(p);
  for (const Buffer& b : buffers_)
    if (b.host) {
      const auto* base = static_cast<const std::byte*>(b.data);
      if (q >= base && q + bytes <= base + b.bytes) return true;
    }
  return false;
}

bool CudaDevice::in_arena(const void* p, size_t bytes) const {
  const auto* q = static_cast<const std::byte*>(p);
  const auto* base = static_cast<const std::byte*>(arena_);
  return arena_ && q >= base && q + bytes <= base + arena_top_;
}

const char* CudaDevice::buffer_label(BufferId b) const {
  return b.valid() ? checker_.buffer_name(b.index).c_str() : "an untracked buffer";
}

void CudaDevice::check_copy(StreamKind stream, bool h2d, TaskTag tag, BufferId dst, BufferId src,
                            const CopySegment& s, int i) const {
  const void* host = h2d ? s.src : s.dst;
  const void* dev = h2d ? s.dst : s.src;
  const BufferId host_id = h2d ? src : dst, dev_id = h2d ? dst : src;
  const std::string what = std::string("device ") + info_.name + ": copy on stream " + stream_name(stream) + " (" +
                           exec::describe(tag) + "), segment " + std::to_string(i) + " of " +
                           std::to_string(s.bytes) + " bytes: ";
  if (!in_pinned(host, s.bytes))
    throw Error(what + "the host side (" + buffer_label(host_id) +
                ") is not inside a pinned buffer from alloc_host; CUDA copies here are never pageable: stage the "
                "bytes through an alloc_host buffer");
  if (!in_arena(dev, s.bytes))
    throw Error(what + "the device side (" + buffer_label(dev_id) + ") is not inside the device arena");
}

// ---- timing ---------------------------------------------------------------------------------------

CudaDevice::Timing& CudaDevice::begin_timing(int s, TaskTag tag, uint64_t bytes) {
  Timing& t = timing_[s][timing_next_[s]++ % kTimingRing];
  if (t.pending) harvest(t, /*block=*/true);  // the GPU is kTimingRing tasks behind: wait for the oldest
  t.tag = tag;
  t.bytes = bytes;
  FERRY_CUDA_CHECK(cudaEventRecord(t.start, streams_[s]));
  return t;
}

void CudaDevice::end_timing(int s, Timing& t) {
  FERRY_CUDA_CHECK(cudaEventRecord(t.end, streams_[s]));
  t.pending = true;
}

void CudaDevice::harvest(Timing& t, bool block) const {
  if (!t.pending) return;
  if (block) {
    FERRY_CUDA_CHECK(cudaEventSynchronize(t.end));
  } else {
    const cudaError_t q = cudaEventQuery(t.end);
    if (q == cudaErrorNotReady) return;
    FERRY_CUDA_CHECK(q);
  }
  float ms = 0;
  FERRY_CUDA_CHECK(cudaEventElapsedTime(&ms, t.start, t.end));
  t.pending = false;
  const int s = t.stream;
  busy_seconds_[s] += ms * 1e-3;
  if (trace_) {
    float from_ref = 0;
    if (cudaEventElapsedTime(&from_ref, trace_ref_, t.start) == cudaSuccess && from_ref >= 0) {
      const double start = trace_ref_us_ + from_ref * 1e3;
      trace_->add(static_cast<StreamKind>(s), t.tag, start, start + ms * 1e3, t.bytes);
    } else {
      cudaGetLastError();  // recorded before the trace was set: not traced
    }
  }
}

void CudaDevice::harvest_all(bool block) const {
  for (int s = 0; s < kDeviceStreams; ++s) {
    // oldest first, so the trace of a stream is in order
    const size_t n = kTimingRing;
    for (size_t i = 0; i < n; ++i) harvest(timing_[s][(timing_next_[s] + i) % n], block);
  }
}

// ---- work -----------------------------------------------------------------------------------------

void CudaDevice::launch(StreamKind stream, TaskTag tag, std::span<const BufferAccess> access, Task fn) {
  checker_.on_task(stream, tag, access);
  if (stream == StreamKind::Host) {
    HostOp op;
    op.type = HostOp::Run;
    op.tag = tag;
    op.fn = std::move(fn);
    enqueue_host(std::move(op));
    return;
  }
  make_current();
  const int s = device_index(stream);
  Timing& t = begin_timing(s, tag, 0);
  fn(StreamContext{stream, streams_[s]});
  end_timing(s, t);
}

bool CudaDevice::copies_to_device(StreamKind stream, BufferId src, std::span<const CopySegment> segments) const {
  if (stream != StreamKind::Compute) return stream == StreamKind::H2D;
  // A Compute-stream copy (a small relay ordered with the compute work, device.h) goes either way: it is
  // host -> device when its source is host memory.
  if (src.valid()) return buffers_[src.index].host;
  for (const CopySegment& s : segments)
    if (s.bytes) return in_pinned(s.src, s.bytes);
  return true;
}

void CudaDevice::copy(StreamKind stream, TaskTag tag, BufferId dst, BufferId src,
                      std::span<const CopySegment> segments) {
  // Compute too, as the host devices allow (the executor's ids relay rides on it: load_ids).
  FERRY_ASSERT(stream != StreamKind::Host);
  FERRY_ASSERT(segments.size() <= kMaxCopySegments);
  FERRY_ASSERT(src.index < static_cast<int>(buffers_.size()) && dst.index < static_cast<int>(buffers_.size()));
  const bool h2d = copies_to_device(stream, src, segments);
  std::array<BufferAccess, 2> access;
  int n = 0;
  if (src.valid()) access[n++] = {src, Access::Read};
  if (dst.valid()) access[n++] = {dst, Access::Write};
  for (size_t i = 0; i < segments.size(); ++i)
    if (segments[i].bytes) check_copy(stream, h2d, tag, dst, src, segments[i], static_cast<int>(i));
  checker_.on_task(stream, tag, std::span<const BufferAccess>(access.data(), n));
  make_current();
  const int s = device_index(stream);
  const cudaStream_t cs = streams_[s];
  uint64_t bytes = 0;
  for (const CopySegment& seg : segments) bytes += seg.bytes;
  Timing& t = begin_timing(s, tag, bytes);
  // the link caps apply to the copy engines' streams only, not to relays on the Compute stream
  const double cap = stream == StreamKind::H2D ? info_.h2d_gbps : stream == StreamKind::D2H ? info_.d2h_gbps : 0.0;
  ThrottleSlot* slot = nullptr;
  if (cap > 0 && bytes > 0) {
    const int link = stream == StreamKind::H2D ? 0 : 1;
    slot = &throttle_[link][throttle_next_[link]++ % kThrottleRing];
    while (slot->busy.load(std::memory_order_acquire)) std::this_thread::yield();  // kThrottleRing copies behind
    slot->gbps = cap;
    slot->bytes = bytes;
    slot->busy.store(true, std::memory_order_release);
    FERRY_CUDA_CHECK(cudaLaunchHostFunc(cs, &CudaDevice::throttle_begin, slot));
  }
  const cudaMemcpyKind kind = h2d ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost;
  for (const CopySegment& seg : segments)
    if (seg.bytes && seg.dst != seg.src) FERRY_CUDA_CHECK(cudaMemcpyAsync(seg.dst, seg.src, seg.bytes, kind, cs));
  if (slot) FERRY_CUDA_CHECK(cudaLaunchHostFunc(cs, &CudaDevice::throttle_end, slot));
  end_timing(s, t);
  bytes_[s] += bytes;
}

void CUDART_CB CudaDevice::throttle_begin(void* p) {
  static_cast<ThrottleSlot*>(p)->start = std::chrono::steady_clock::now();
}

void CUDART_CB CudaDevice::throttle_end(void* p) {
  // Runs on the CUDA runtime's callback thread; makes no CUDA call, only holds the stream.
  auto* slot = static_cast<ThrottleSlot*>(p);
  const auto until = slot->start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                       std::chrono::duration<double>(static_cast<double>(slot->bytes) / (slot->gbps * 1e9)));
  std::this_thread::sleep_until(until);
  slot->busy.store(false, std::memory_order_release);
}

// ---- events ---------------------------------------------------------------------------------------

EventId CudaDevice::create_event() {
  if (static_cast<int>(events_.size()) >= kMaxEvents)
    throw Error("device " + info_.name + ": more than " + std::to_string(kMaxEvents) + " events");
  make_current();
  auto e = std::make_unique<EventState>();
  for (cudaEvent_t& ev : e->ev) FERRY_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  events_.push_back(std::move(e));
  const int id = checker_.add_event();
  FERRY_ASSERT(id == static_cast<int>(events_.size()) - 1);
  return EventId{id};
}

void CudaDevice::record(EventId e, StreamKind stream) {
  FERRY_ASSERT(e.index >= 0 && e.index < static_cast<int>(events_.size()));
  checker_.on_record(e.index, stream);
  EventState& es = *events_[e.index];
  const uint64_t gen = ++es.generation;
  es.last = stream;
  if (stream == StreamKind::Host) {
    HostOp op;
    op.type = HostOp::Record;
    op.event = e.index;
    op.generation = gen;
    enqueue_host(std::move(op));
    return;
  }
  make_current();
  const int slot = static_cast<int>(gen % kEventRing);
  if (es.host_waiters[slot].load() > 0) {  // a Host-stream wait on this slot's older record is still queued
    std::unique_lock lock(mutex_);
    wait_done(lock, [&] { return es.host_waiters[slot].load() == 0; });
  }
  FERRY_CUDA_CHECK(cudaEventRecord(es.ev[slot], streams_[device_index(stream)]));
}

void CudaDevice::wait(StreamKind stream, EventId e) {
  FERRY_ASSERT(e.index >= 0 && e.index < static_cast<int>(events_.size()));
  checker_.on_wait(stream, e.index);
  EventState& es = *events_[e.index];
  const uint64_t gen = es.generation;
  if (gen == 0) return;  // never recorded: nothing to wait for
  const int slot = static_cast<int>(gen % kEventRing);
  if (stream != StreamKind::Host) {
    if (es.last == StreamKind::Host) {
      wait_host_generation(e.index, gen);  // the enqueuing thread waits (see cuda_device.h)
      return;
    }
    make_current();
    FERRY_CUDA_CHECK(cudaStreamWaitEvent(streams_[device_index(stream)], es.ev[slot], 0));
    return;
  }
  HostOp op;
  op.event = e.index;
  op.generation = gen;
  if (es.last == StreamKind::Host) {
    op.type = HostOp::WaitHost;
  } else {
    op.type = HostOp::WaitDevice;
    op.device_event = es.ev[slot];
    op.waiters = &es.host_waiters[slot];
    op.waiters->fetch_add(1);
  }
  enqueue_host(std::move(op));
}

void CudaDevice::synchronize(EventId e) {
  FERRY_ASSERT(e.index >= 0 && e.index < static_cast<int>(events_.size()));
  checker_.on_host_sync(e.index);
  EventState& es = *events_[e.index];
  if (es.generation > 0) {
    if (es.last == StreamKind::Host) {
      wait_host_generation(e.index, es.generation);
    } else {
      make_current();
      FERRY_CUDA_CHECK(cudaEventSynchronize(es.ev[es.generation % kEventRing]));
    }
  }
  rethrow_worker_error();
}

void CudaDevice::synchronize() {
  checker_.on_host_sync_all();
  make_current();
  // Device streams first: Host-stream waits may be waiting for them, never the other way round.
  for (cudaStream_t s : streams_) FERRY_CUDA_CHECK(cudaStreamSynchronize(s));
  {
    std::unique_lock lock(mutex_);
    wait_done(lock, [&] { return host_completed_.load() >= host_enqueued_; });
  }
  harvest_all(/*block=*/true);
  rethrow_worker_error();
}

void CudaDevice::wait_host_generation(int event, uint64_t gen) {
  std::unique_lock lock(mutex_);
  wait_done(lock, [&] { return host_done_[event].load() >= gen; });
}

template <class Pred>
void CudaDevice::wait_done(std::unique_lock<std::mutex>& lock, Pred pred) {
  host_done_cv_.wait(lock, pred);
}

void CudaDevice::rethrow_worker_error() {
  std::exception_ptr e;
  {
    std::lock_guard lock(mutex_);
    std::swap(e, worker_error_);
  }
  if (e) std::rethrow_exception(e);
}

// ---- Host stream ----------------------------------------------------------------------------------

void CudaDevice::enqueue_host(HostOp&& op) {
  {
    std::unique_lock lock(mutex_);
    host_space_.wait(lock, [&] { return host_tail_ - host_head_ < host_ring_.size(); });
    host_ring_[host_tail_ % host_ring_.size()] = std::move(op);
    ++host_tail_;
    ++host_enqueued_;
  }
  host_work_.notify_one();
}

void CudaDevice::host_worker() {
  try {
    make_current();
  } catch (...) {
    std::lock_guard lock(mutex_);
    worker_error_ = std::current_exception();
  }
  for (;;) {
    HostOp op;
    {
      std::unique_lock lock(mutex_);
      host_work_.wait(lock, [&] { return host_tail_ > host_head_ || stopping_; });
      if (host_tail_ == host_head_) return;  // stopping, and the queue is drained
      op = std::move(host_ring_[host_head_ % host_ring_.size()]);
      ++host_head_;
    }
    host_space_.notify_one();
    try {
      switch (op.type) {
        case HostOp::Run: {
          Trace* trace = host_trace_.load();
          const double start_us = trace ? trace->now_us() : 0;
          const double t0 = now_s();
          op.fn(StreamContext{StreamKind::Host, nullptr});
          op.fn.reset();
          host_busy_ns_.fetch_add(static_cast<uint64_t>((now_s() - t0) * 1e9), std::memory_order_relaxed);
          if (trace) trace->add(StreamKind::Host, op.tag, start_us, trace->now_us(), 0);
          break;
        }
        case HostOp::Record: {
          std::lock_guard lock(mutex_);
          host_done_[op.event].store(std::max(host_done_[op.event].load(), op.generation));
          break;
        }
        case HostOp::WaitHost: {  // FIFO order already holds; kept for symmetry
          std::unique_lock lock(mutex_);
          host_done_cv_.wait(lock, [&] { return host_done_[op.event].load() >= op.generation; });
          break;
        }
        case HostOp::WaitDevice: {
          const cudaError_t err = cudaEventSynchronize(op.device_event);
          {
            std::lock_guard lock(mutex_);
            op.waiters->fetch_sub(1);
          }
          if (err != cudaSuccess) FERRY_CUDA_CHECK(err);
          break;
        }
      }
    } catch (...) {
      std::lock_guard lock(mutex_);
      if (!worker_error_) worker_error_ = std::current_exception();
    }
    {
      std::lock_guard lock(mutex_);
      host_completed_.fetch_add(1);
    }
    host_done_cv_.notify_all();
  }
}

// ---- trace and counters ---------------------------------------------------------------------------

void CudaDevice::set_trace(Trace* trace) {
  make_current();
  // Account everything recorded so far into the old trace (if any) before switching.
  for (cudaStream_t s : streams_) FERRY_CUDA_CHECK(cudaStreamSynchronize(s));
  harvest_all(/*block=*/true);
  trace_ = trace;
  host_trace_.store(trace);
  if (trace) {
    FERRY_CUDA_CHECK(cudaEventRecord(trace_ref_, streams_[0]));
    FERRY_CUDA_CHECK(cudaEventSynchronize(trace_ref_));
    trace_ref_us_ = trace->now_us();
  }
}

DeviceCounters CudaDevice::counters() const {
  harvest_all(/*block=*/false);
  DeviceCounters c;
  for (int s = 0; s < kDeviceStreams; ++s) {
    c.busy_seconds[s] = busy_seconds_[s];
    c.bytes[s] = bytes_[s];
  }
  c.busy_seconds[static_cast<int>(StreamKind::Host)] = static_cast<double>(host_busy_ns_.load()) * 1e-9;
  return c;
}

}  // namespace ferry::cuda
