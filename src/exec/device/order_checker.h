// Enforces the Device ordering contract (ferry/device.h) when tasks are enqueued: vector clocks over
// the streams say which tasks of other streams each stream (and the host) is ordered after; every
// buffer remembers its last writer and its last reader per stream. Deterministic: a misordered access
// is an error whether or not the copy happened to finish in time.
#pragma once
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ferry/device.h"

namespace ferry::exec {

using StreamClock = std::array<uint64_t, kStreamCount>;

class OrderChecker {
 public:
  OrderChecker();
  int add_buffer(const std::string& name, size_t bytes);
  int add_event();
  const std::string& buffer_name(int b) const { return buffers_[b].name; }
  size_t buffer_bytes(int b) const { return buffers_[b].bytes; }
  size_t n_buffer() const { return buffers_.size(); }

  // Checks and records a task about to be enqueued on `stream`; throws ferry::Error on a violation.
  void on_task(StreamKind stream, TaskTag tag, std::span<const BufferAccess> access);
  void on_record(int event, StreamKind stream);
  void on_wait(StreamKind stream, int event);
  void on_host_sync(int event);
  void on_host_sync_all();

 private:
  struct Writer {
    int stream = -1;
    uint64_t seq = 0;
    TaskTag tag;
  };
  struct BufferState {
    std::string name;
    size_t bytes = 0;
    Writer writer;
    StreamClock last_read{};               // per stream: seq of its latest read (0: none since the write)
    std::array<TaskTag, kStreamCount> read_tag{};
  };
  static void merge(StreamClock& into, const StreamClock& from);
  [[noreturn]] void fail(const BufferState& b, const char* what, StreamKind stream, TaskTag tag, int other_stream,
                         TaskTag other_tag) const;

  std::array<StreamClock, kStreamCount> stream_clock_{};  // [s][r]: tasks of r that s is ordered after
  StreamClock host_clock_{};
  std::vector<StreamClock> event_clock_;
  std::vector<BufferState> buffers_;
};

std::string describe(TaskTag tag);

}  // namespace ferry::exec
