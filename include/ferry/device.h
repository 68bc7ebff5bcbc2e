// Device: the small interface the pipelined executor drives. Memory (a capacity and one arena carved
// into named buffers, plus pinned host staging), streams (FIFO queues of tasks), events (cross-stream
// ordering and host sync), asynchronous copies host<->device, and the device's op set (LayerOps,
// ferry/exec/layer_ops.h). A Compute task receives its stream's context and *enqueues* device work
// through the op set (on CUDA the task runs on the calling thread and returns at once); only Host-stream
// tasks run host code. Weights are uploaded into device buffers; nothing on the device points into
// host structures.
//
// Streams: Compute (device kernels), H2D and D2H (the two copy engines, independent of each other),
// Host (CPU work such as decode attention, ordered by events exactly like the device streams).
//
// Ordering contract. A task on stream S may touch a buffer last written (or, for a write, last read)
// by a task on another stream R only if S is ordered after that task: through an event recorded on R
// after it and waited on S (directly or transitively), or a host synchronize before the enqueue.
// Every implementation checks this when a task is enqueued, from the buffers the task declares,
// with vector clocks over the streams; a violation throws ferry::Error naming the buffer and both tasks.
// The check does not depend on timing, so a misordered access is reported even when the copy
// happened to finish first.
//
// Implementations (create_device): `cpu` runs every task at once on the calling thread (copies are
// memcpy); `sim:<profile>[,scale=X][,h2d=GBps][,d2h=GBps]` emulates a GPU of the hardware profile:
// its memory capacity (times `scale`), one worker thread per stream, copies that take
// bytes / link bandwidth of wall time. Sim timings are not GPU timings. `cuda[:N][,capacity=SIZE]`
// (kernels/cuda_device.h, built with FERRY_CUDA): an NVIDIA GPU, its arena capped at SIZE so a large
// GPU can behave like a smaller one.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <new>
#include <span>
#include <string>
#include <type_traits>
#include <utility>

namespace ferry {

class Trace;
class LayerOps;

enum class StreamKind : uint8_t { Compute, H2D, D2H, Host };
inline constexpr int kStreamCount = 4;
const char* stream_name(StreamKind s);

// What a task is, for the trace and error messages.
enum class TaskKind : uint8_t {
  Embed, PreAttention, Attention, PostAttention, Experts, LmHead, Prefill,  // compute / host
  LoadHidden, OffloadQkv, ExpertPage, Logits, Upload,                       // copies
  SsdRead,                                                                  // host: store -> staging
};
inline constexpr int kTaskKindCount = 13;
const char* task_kind_name(TaskKind k);

struct TaskTag {
  TaskKind kind = TaskKind::PreAttention;
  int16_t layer = -1;
  int16_t micro_batch = -1;
};

struct BufferId {
  int32_t index = -1;
  bool valid() const { return index >= 0; }
};

enum class Access : uint8_t { Read, Write };
struct BufferAccess {
  BufferId buffer;
  Access access = Access::Read;
};

// What a task is given when it runs: its stream, and the stream's native handle on devices that have
// one (a cudaStream_t on CUDA; null on the host devices). Ops enqueue their work on it.
struct StreamContext {
  StreamKind stream = StreamKind::Compute;
  void* native = nullptr;
};

// A move-only closure stored inline (no heap allocation): the hot path enqueues tasks without
// allocating. Captures must fit in kTaskCapture bytes (capture a pointer to a context, not values).
// The closure takes the StreamContext it runs on, or nothing.
inline constexpr size_t kTaskCapture = 48;
class Task {
 public:
  Task() = default;
  template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, Task>>>
  Task(F&& f) {  // NOLINT: implicit from a lambda on purpose
    using Fn = std::decay_t<F>;
    static_assert(sizeof(Fn) <= kTaskCapture, "task capture too large: capture a pointer to a context");
    static_assert(alignof(Fn) <= alignof(std::max_align_t));
    new (storage_) Fn(std::forward<F>(f));
    invoke_ = [](void* p, const StreamContext& ctx) {
      if constexpr (std::is_invocable_v<Fn&, const StreamContext&>)
        (*static_cast<Fn*>(p))(ctx);
      else
        (*static_cast<Fn*>(p))();
    };
    manage_ = [](void* dst, void* src) {
      if (dst) new (dst) Fn(std::move(*static_cast<Fn*>(src)));
      static_cast<Fn*>(src)->~Fn();
    };
  }
  Task(Task&& o) noexcept { move_from(o); }
  Task& operator=(Task&& o) noexcept {
    if (this != &o) {
      reset();
      move_from(o);
    }
    return *this;
  }
  ~Task() { reset(); }
  explicit operator bool() const { return invoke_ != nullptr; }
  void operator()(const StreamContext& ctx = {}) { invoke_(storage_, ctx); }
  void reset() {
    if (manage_) manage_(nullptr, storage_);
    invoke_ = nullptr;
    manage_ = nullptr;
  }

 private:
  void move_from(Task& o) {
    if (o.manage_) o.manage_(storage_, o.storage_);
    invoke_ = o.invoke_;
    manage_ = o.manage_;
    o.invoke_ = nullptr;
    o.manage_ = nullptr;
  }
  alignas(std::max_align_t) unsigned char storage_[kTaskCapture];
  void (*invoke_)(void*, const StreamContext&) = nullptr;
  void (*manage_)(void*, void*) = nullptr;
};

// One contiguous piece of a copy (a copy of a packed expert moves several arrays at once).
struct CopySegment {
  void* dst = nullptr;
  const void* src = nullptr;
  size_t bytes = 0;
};
inline constexpr int kMaxCopySegments = 12;

struct EventId {
  int32_t index = -1;
};

// Every device allocation is rounded up to this (and aligned to it): capacity is charged in these units.
inline constexpr size_t kDeviceAlign = 256;

struct DeviceInfo {
  std::string name;              // "cpu", "sim:l4", "cuda:0 (NVIDIA H200)"
  size_t capacity_bytes = 0;     // device memory the arena may use
  double h2d_gbps = 0;           // 0: copies are free (cpu); on CUDA the cap set by h2d= (0: none)
  double d2h_gbps = 0;
  bool asynchronous = false;     // streams run on their own threads (or on the GPU)
  bool host_addressable = true;  // device buffers are host memory (cpu, sim); false on CUDA
};

// What each stream did since the device was created: time spent running tasks and copies (waits
// excluded) and bytes copied. Read after synchronize().
struct DeviceCounters {
  std::array<double, kStreamCount> busy_seconds{};  // indexed by StreamKind
  std::array<uint64_t, kStreamCount> bytes{};
  // Time each stream sat blocked on an event another stream records (for Compute: the expert pages and
  // loads it waits for, the stall). Measured by the host-emulated devices; none where absent (CUDA).
  std::optional<std::array<double, kStreamCount>> wait_seconds;
};

class Device {
 public:
  virtual ~Device() = default;
  virtual const DeviceInfo& info() const = 0;

  // ---- memory ----
  // Carves a named buffer (64-byte aligned) from the device arena. Throws ferry::Error naming the
  // buffer, the bytes requested and the bytes free when it does not fit the capacity.
  virtual BufferId alloc(const std::string& name, size_t bytes) = 0;
  // Host memory the device copies to and from (pinned staging on CUDA); not charged, but tracked.
  virtual BufferId alloc_host(const std::string& name, size_t bytes) = 0;
  // The buffer's address in its own memory: device memory for alloc (the host may dereference it only
  // when info().host_addressable), host memory for alloc_host.
  virtual void* data(BufferId b) = 0;
  // Copies bytes from host memory into a device buffer at `offset` and waits for it. Setup only
  // (weights, tables): never inside the decode loop.
  virtual void upload(BufferId dst, size_t offset, const void* src, size_t bytes) = 0;
  virtual size_t size(BufferId b) const = 0;
  virtual const std::string& name(BufferId b) const = 0;
  virtual size_t used_bytes() const = 0;
  size_t free_bytes() const { return info().capacity_bytes - used_bytes(); }

  // ---- work ----
  // Runs `fn` on `stream` after the stream's earlier tasks. `access` lists the tracked buffers it
  // touches (checked against the ordering contract above).
  virtual void launch(StreamKind stream, TaskTag tag, std::span<const BufferAccess> access, Task fn) = 0;
  // Copies segments on a copy stream (H2D or D2H), or on the Compute stream for small relays that must
  // not queue behind expert pages on the link (a host->device copy ordered with the compute work). The
  // host side must lie in an alloc_host buffer (pinned on CUDA). `dst`/`src` name the tracked buffers the
  // segments lie in.
  virtual void copy(StreamKind stream, TaskTag tag, BufferId dst, BufferId src,
                    std::span<const CopySegment> segments) = 0;
  void copy(StreamKind stream, TaskTag tag, BufferId dst, BufferId src, void* dst_ptr, const void* src_ptr,
            size_t bytes) {
    const CopySegment seg{dst_ptr, src_ptr, bytes};
    copy(stream, tag, dst, src, std::span<const CopySegment>(&seg, 1));
  }

  // ---- events ----
  virtual EventId create_event() = 0;
  virtual void record(EventId e, StreamKind stream) = 0;      // completes when the stream reaches it
  virtual void wait(StreamKind stream, EventId e) = 0;        // stream waits for the latest record
  virtual void synchronize(EventId e) = 0;                    // host waits
  virtual void synchronize() = 0;                             // host waits for every stream

  // The device's op set (ferry/exec/layer_ops.h), owned by the device.
  virtual LayerOps& ops() = 0;

  // Tasks are recorded here when set (resource, kind, layer, micro-batch, start, end, bytes).
  virtual void set_trace(Trace* trace) = 0;
  virtual DeviceCounters counters() const = 0;
};

// `cpu`, `sim:<profile>[,scale=X][,h2d=GBps][,d2h=GBps]` (profile: a preset name of
// ferry/planner/hardware_profile.h or a profile JSON path) or `cuda[:N][,capacity=SIZE][,h2d=GBps]`.
// Throws ferry::Error for an unknown target, a profile without a GPU, or (cuda) no usable GPU or a
// build without CUDA, naming the call and its result.
std::unique_ptr<Device> create_device(const std::string& target);

// A device target parsed once: which kind of device, and the whole spelling (the device parses its options).
enum class DeviceKind { Host, Sim, Cuda };
struct DeviceTarget {
  DeviceKind kind = DeviceKind::Host;
  std::string spec;  // "cpu", "sim:l4,scale=0.5", "cuda:1,capacity=24GB"
};
// nullopt when `target` names no device.
std::optional<DeviceTarget> parse_device_target(const std::string& target);
bool is_device_target(const std::string& target);
// Whether the target names a CUDA device (`cuda`, `cuda:1,capacity=24GB`).
bool is_cuda_target(const std::string& target);
// Number of usable CUDA GPUs (0 without a driver, a GPU, or a CUDA build), and why there are none.
int cuda_device_count(std::string* why_none = nullptr);

}  // namespace ferry
