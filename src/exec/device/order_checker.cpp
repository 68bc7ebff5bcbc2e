#include "exec/device/order_checker.h"

#include <algorithm>

#include "ferry/error.h"

namespace ferry::exec {

std::string describe(TaskTag tag) {
  std::string s = task_kind_name(tag.kind);
  if (tag.layer >= 0) s += " layer " + std::to_string(tag.layer);
  if (tag.micro_batch >= 0) s += " micro-batch " + std::to_string(tag.micro_batch);
  return s;
}

OrderChecker::OrderChecker() {
  buffers_.reserve(1024);
  event_clock_.reserve(1024);
}

int OrderChecker::add_buffer(const std::string& name, size_t bytes) {
  buffers_.push_back(BufferState{name, bytes, {}, {}, {}});
  return static_cast<int>(buffers_.size() - 1);
}

int OrderChecker::add_event() {
  event_clock_.push_back(StreamClock{});
  return static_cast<int>(event_clock_.size() - 1);
}

void OrderChecker::merge(StreamClock& into, const StreamClock& from) {
  for (int i = 0; i < kStreamCount; ++i) into[i] = std::max(into[i], from[i]);
}

void OrderChecker::fail(const BufferState& b, const char* what, StreamKind stream, TaskTag tag, int other_stream,
                        TaskTag other_tag) const {
  throw Error("device buffer '" + b.name + "': " + describe(tag) + " on stream " + stream_name(stream) + " " +
              what + " " + describe(other_tag) + " on stream " +
              stream_name(static_cast<StreamKind>(other_stream)) +
              " without an event ordering them; record an event after that task and wait on it first");
}

void OrderChecker::on_task(StreamKind stream, TaskTag tag, std::span<const BufferAccess> access) {
  const int s = static_cast<int>(stream);
  StreamClock& clock = stream_clock_[s];
  merge(clock, host_clock_);  // everything the host has waited for precedes this enqueue
  const uint64_t seq = ++clock[s];
  for (const BufferAccess& a : access) {
    FERRY_ASSERT(a.buffer.index >= 0 && a.buffer.index < static_cast<int>(buffers_.size()));
    BufferState& b = buffers_[a.buffer.index];
    const Writer& w = b.writer;
    if (w.stream >= 0 && w.stream != s && clock[w.stream] < w.seq)
      fail(b, a.access == Access::Read ? "reads it before its write by" : "overwrites it before the write by",
           stream, tag, w.stream, w.tag);
    if (a.access == Access::Write) {
      for (int r = 0; r < kStreamCount; ++r)
        if (r != s && b.last_read[r] > clock[r])
          fail(b, "overwrites it while it may still be read by", stream, tag, r, b.read_tag[r]);
    }
  }
  for (const BufferAccess& a : access) {
    BufferState& b = buffers_[a.buffer.index];
    if (a.access == Access::Write) {
      b.writer = Writer{s, seq, tag};
      b.last_read = {};
    } else {
      b.last_read[s] = seq;
      b.read_tag[s] = tag;
    }
  }
}

void OrderChecker::on_record(int event, StreamKind stream) {
  StreamClock& clock = stream_clock_[static_cast<int>(stream)];
  merge(clock, host_clock_);
  event_clock_[event] = clock;
}

void OrderChecker::on_wait(StreamKind stream, int event) { merge(stream_clock_[static_cast<int>(stream)], event_clock_[event]); }

void OrderChecker::on_host_sync(int event) { merge(host_clock_, event_clock_[event]); }

void OrderChecker::on_host_sync_all() {
  for (int s = 0; s < kStreamCount; ++s) host_clock_[s] = std::max(host_clock_[s], stream_clock_[s][s]);
}

}  // namespace ferry::exec
